"""Shared fixtures and helpers for the console's browser tests (tests/test_console*.py).

A module-scoped Latchkey under gunicorn on a fresh database (the console is served by the same
process, at /console/), headless Chromium driven by playwright, and helpers that act as a person
would (through the console's forms) or check the outcome through the API.

Needs Debian's chromium (/usr/bin/chromium) and the `playwright` package, which drives it (never
`playwright install`: its own browser builds cannot be downloaded here). Test modules put
`pytestmark = needs_chromium`: skipped without chromium on a developer's machine, while in CI (CI
set) a missing chromium is a failure (the `browser` fixture fails).

Usage in a test module:

    from tests.console_helpers import (  # noqa: F401  (fixtures are found by name)
        browser, console_env, console_server, needs_chromium, page, api_session, create_admin,
        sign_up_and_log_in)
    pytestmark = needs_chromium
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

from tests.servers import ROOT, fresh_database, gunicorn, redis_url_or_none, run_migrations, service_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
JSONAPI = "application/vnd.api+json"
SCREENSHOTS = ROOT / "docs" / "screenshots"
STATIC = ROOT / "app" / "console" / "static"
TIMEOUT_MS = 10_000  # a console action that takes longer than this is a failure, not slowness

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"),
                                    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")

# Browser tests sign up and log in many times from one address within a minute: the production
# limits on those (10 per hour for sign-ups) would refuse them. Usage is flushed often so a chart
# shows verifications within a second.
SERVER_SETTINGS = dict(
    RATE_LIMIT_DEFAULTS="2000 per minute", RATE_LIMIT_LOGIN="200 per minute", RATE_LIMIT_SIGNUP="200 per minute",
    RATE_LIMIT_ACCOUNT_CHANGE="200 per minute", RATE_LIMIT_AUTH_FAILURES="200 per minute",
    USAGE_FLUSH_SECONDS="0.3",
)


@pytest.fixture(scope="module")
def console_env(tmp_path_factory):
    """Yield the environment of the module's service: a fresh, migrated database (DATABASE_URL) and
    the suite's limiter storage (Redis in CI's second pass; service_env gives it a prefix of its own)."""
    with fresh_database(tmp_path_factory.mktemp("console")) as database_url:
        env = service_env(database_url, redis_url_or_none() or "memory://", **SERVER_SETTINGS)
        run_migrations(env)
        yield env


@pytest.fixture(scope="module")
def console_server(console_env):
    """Yield the base URL (http://127.0.0.1:PORT) of Latchkey under gunicorn, one worker."""
    with gunicorn(console_env, workers=1) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    """Yield a headless Chromium (one per module: starting it costs about a second)."""
    if not CHROMIUM.exists():
        pytest.fail("CI needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_page(browser, **options):
    """Return a page in a fresh context of its own (no shared state; `options` for the context: a
    viewport, a time zone), with `page.console_errors`: every console error and uncaught exception
    seen (a CSP violation is reported as a console error)."""
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **options})
    context.set_default_timeout(TIMEOUT_MS)
    created = context.new_page()
    created.console_errors = []
    created.on("console", lambda message: message.type == "error" and created.console_errors.append(message.text))
    created.on("pageerror", lambda error: created.console_errors.append(str(error)))
    return created


@pytest.fixture
def page(browser):
    """Yield a page of its own (new_page), closed after the test."""
    created = new_page(browser)
    yield created
    created.context.close()


def create_admin(env, email, password):
    """Create an admin account (or promote an existing one) with `manage.py users create-admin`,
    against the database of `env` (the `console_env` fixture)."""
    subprocess.run([sys.executable, "manage.py", "users", "create-admin", "--email", email], cwd=ROOT,
                   env=dict(env, LATCHKEY_ADMIN_PASSWORD=password), check=True, capture_output=True, timeout=60)


def log_in(page, base, email, password):
    """Log in through the console's form and wait for the key list."""
    page.goto(f"{base}/console/#/login")
    form = page.locator("form[data-form=login]")
    form.locator("input[name=email]").fill(email)
    form.locator("input[name=password]").fill(password)
    form.locator("button[type=submit]").click()
    page.locator("[data-view=keys]").wait_for()


def sign_up_and_log_in(page, base, email, password):
    """Create the account through the console's sign-up form (which logs in too); wait for the key
    list."""
    page.goto(f"{base}/console/#/signup")
    form = page.locator("form[data-form=signup]")
    form.locator("input[name=email]").fill(email)
    form.locator("input[name=password]").fill(password)
    form.locator("button[type=submit]").click()
    page.locator("[data-view=keys]").wait_for()


def api_session(base, email, password):
    """Return a requests.Session logged in as `email` (Bearer access token, JSON:API headers), with
    `session.base` = base and `session.user_id`; paths are joined by `session.url(path)`."""
    answer = requests.post(f"{base}/v1/auth/login", json={"email": email, "password": password}, timeout=10)
    answer.raise_for_status()
    meta = answer.json()["meta"]
    session = requests.Session()
    session.headers.update(Authorization=f"Bearer {meta['access_token']}", Accept=JSONAPI)
    session.base = base
    session.user_id = meta["user_id"]
    session.url = lambda path: f"{base}{path}"
    return session


def screenshot(page, name, full_page=True, selector=None):
    """Take a screenshot of the page (or of the element `selector` names), as the README's are made.
    It is saved as docs/screenshots/<name>.png only with LATCHKEY_SCREENSHOTS=1 (`LATCHKEY_SCREENSHOTS=1
    scripts/test tests/test_console.py`), so that a test run leaves the committed ones alone."""
    folder = SCREENSHOTS if os.environ.get("LATCHKEY_SCREENSHOTS") else Path(tempfile.gettempdir()) / "latchkey-shots"
    folder.mkdir(parents=True, exist_ok=True)
    path = str(folder / f"{name}.png")
    if selector:
        page.locator(selector).screenshot(path=path)
    else:
        page.screenshot(path=path, full_page=full_page)

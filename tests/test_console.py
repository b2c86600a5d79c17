"""The console (/console/) in headless Chromium against Latchkey under gunicorn: a person signs up,
creates, finds, edits, rotates, suspends, revokes and deletes keys, reads a key's usage chart, and
logs out; every outcome is checked through the API too. The page must raise no console error and
no CSP violation. Screenshots go to docs/screenshots/ (the README shows them).

Fixtures are in tests/console_helpers.py (shared with the admin, account and audit views' tests).
"""
import json
import re
import time
from datetime import UTC, datetime

import pytest
import requests
from playwright.sync_api import expect
from sqlalchemy import create_engine, text

from tests.console_helpers import (  # its fixtures are a plugin (tests/conftest.py)
    JSONAPI,
    STATIC,
    api_session,
    create_admin,
    needs_chromium,
    screenshot,
    sign_up_and_log_in,
)
from tests.helpers import PASSWORD
from tests.servers import gunicorn

pytestmark = needs_chromium

CONFIRM = "dialog[data-dialog=confirm] button[value=confirm]"
SECRET_DIALOG = "dialog[data-dialog=secret]"
EXPIRY = f"{time.gmtime().tm_year + 1}-01-15T10:30"  # a datetime-local value: the browser's time zone


def key_works(base, secret) -> int:
    """The status of GET /v1/api-keys made with `secret` (200: the key authenticates and may read)."""
    return requests.get(f"{base}/v1/api-keys", headers={"X-API-Key": secret, "Accept": JSONAPI}, timeout=10).status_code


def read_secret_and_close(page) -> str:
    dialog = page.locator(SECRET_DIALOG)
    expect(dialog).to_contain_text("You will not see this secret again")
    secret = dialog.locator("[data-secret]").input_value()
    dialog.get_by_role("button", name="Copy").click()  # the clipboard, or the text selected for Ctrl+C
    expect(dialog.locator(".copy-status")).to_contain_text(re.compile("Copied|Selected"))
    dialog.get_by_role("button", name="I have stored it").click()
    expect(dialog).to_have_count(0)
    return secret


def create_key(page, base, name, scopes=("keys:read",), tags="", limits=False, shoot=False):
    """Create a key through the form (with `limits`: an expiry, an IP allowlist, a quota and a
    budget too); return (id, secret) once its page is shown."""
    page.goto(f"{base}/console/#/keys/new")
    form = page.locator("form[data-form=create-key]")
    form.get_by_label("Name", exact=True).fill(name)
    form.get_by_label("Tags").fill(tags)
    for scope in scopes:
        form.locator(f"input[name=scopes][value='{scope}']").check()
    if limits:
        form.get_by_label("Expires").fill(EXPIRY)
        form.get_by_label("Allowed IP addresses").fill("127.0.0.1\n10.0.0.0/8")
        form.locator("[data-field=quota]").get_by_label("Limit").fill("1000")
        form.locator("[data-field=budget]").get_by_label("Limit").fill("500")
        form.locator("[data-field=budget]").get_by_label("Per").select_option("month")
    form.get_by_role("button", name="Create key").click()
    page.locator(SECRET_DIALOG).wait_for()
    if shoot:
        screenshot(page, "console-secret", full_page=False)
    secret = read_secret_and_close(page)
    detail = page.locator("[data-view=key-detail]")
    detail.wait_for()
    return detail.get_attribute("data-key-id"), secret


def check_page_is_clean(page):
    """No console error, no CSP violation, no horizontal scroll at the current width. Chromium logs
    every 4xx answer as a failed load: those are the API's answers the test asked for (a 422 shown
    on a form, the 401 before a refresh), not the page's errors."""
    assert [text for text in page.console_errors if not re.search(r"status of 4\d\d", text)] == []
    assert page.evaluate("window.__cspViolations") == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def unlabelled_controls(page):
    """The visible form controls without an accessible name (a <label>, aria-label or -labelledby)."""
    return page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter((el) => el.offsetParent !== null && el.type !== 'hidden')
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                        && !el.getAttribute('aria-labelledby') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
        .map((el) => el.outerHTML)""")


@pytest.fixture
def watched(page):
    """The page, recording CSP violations in window.__cspViolations (an init script is the
    browser's, not the page's: the CSP does not apply to it)."""
    page.add_init_script("""window.__cspViolations = [];
        document.addEventListener('securitypolicyviolation',
            (e) => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));""")
    return page


def test_console_answers_carry_a_strict_policy(console_server):
    for path in ("/console/", "/console/js/app.js", "/console/css/console.css", "/console/missing.js"):
        answer = requests.get(f"{console_server}{path}", timeout=10)
        policy = answer.headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert requests.get(f"{console_server}/console/missing.js", timeout=10).status_code == 404
    # An escaped "..": only files under app/console/static are served (the package's code is next door).
    assert requests.get(f"{console_server}/console/%2e%2e/__init__.py", timeout=10).status_code == 404
    script = requests.get(f"{console_server}/console/js/app.js", timeout=10)
    assert script.headers["Content-Type"].startswith("text/javascript")  # module scripts need a JS type


def test_the_console_has_no_inline_code_and_no_remote_resources():
    html = (STATIC / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []  # every script is a file
    files = [path for path in STATIC.rglob("*") if path.suffix in (".html", ".js", ".css")]
    for path in files:
        # Comments may name what the code must not do ("never localStorage"): only code counts.
        text = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)
        text = re.sub(r"(?m)^\s*//.*$|\s//\s.*$", "", text)
        assert not re.search(r"\son[a-z]+=|style=|innerHTML|localStorage|sessionStorage|document\.cookie", text), path
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), path  # no CDN, no remote font


def test_a_person_manages_a_key_from_sign_up_to_deletion(watched, console_server):
    page, base = watched, console_server
    sign_up_and_log_in(page, base, "ann@example.com", PASSWORD)
    expect(page.locator(".empty")).to_contain_text("no API keys yet")
    ann = api_session(base, "ann@example.com", PASSWORD)

    key_id, secret = create_key(page, base, "CI deploys", tags="ci, prod", limits=True, shoot=True)
    expect(page.locator("[data-quota]")).to_contain_text("1000 of 1000 requests left (per day")
    assert key_works(base, secret) == 200
    other_id, _ = create_key(page, base, "Staging", scopes=(), tags="staging")
    attributes = ann.get(ann.url(f"/v1/api-keys/{key_id}")).json()["data"]["attributes"]
    assert attributes["tags"] == ["ci", "prod"] and attributes["scopes"] == ["keys:read"]
    assert attributes["allowed-ips"] == ["127.0.0.1", "10.0.0.0/8"]
    assert attributes["expires-at"].startswith(EXPIRY[:8])  # the year and month, whatever the time zone
    assert (attributes["quota"]["limit"], attributes["quota"]["period"]) == (1000, "day")
    assert (attributes["budget"]["limit"], attributes["budget"]["period"]) == (500, "month")

    # The list: both keys, then a search by name and a filter by tag.
    page.goto(f"{base}/console/#/keys")
    expect(page.locator(".key-row")).to_have_count(2)
    screenshot(page, "console-keys")
    page.get_by_label("Search by name").fill("deploy")
    expect(page.locator(".key-row")).to_have_count(1)
    expect(page.locator(".key-row")).to_contain_text("CI deploys")
    page.get_by_label("Search by name").fill("")
    page.get_by_label("Tag").fill("staging")
    expect(page.locator(".key-row")).to_have_count(1)
    expect(page.locator(".key-row")).to_contain_text("Staging")
    page.get_by_label("Tag").fill("")
    expect(page.locator(".key-row")).to_have_count(2)

    # Edit: an invalid rate limit is refused, in words, next to its field; then a valid edit.
    page.locator(f".key-row[data-key-id='{key_id}'] a.name").click()
    form = page.locator("form[data-form=edit-key]")
    form.get_by_label("Name", exact=True).fill("CI deploys (main)")
    form.get_by_label("Rate limit").fill("lots")
    form.get_by_role("button", name="Save changes").click()
    error = form.locator("[data-field=rate-limit] .field-error")
    expect(error).to_contain_text("flask-limiter notation")
    expect(form.get_by_label("Rate limit")).to_have_attribute("aria-invalid", "true")
    form.get_by_label("Rate limit").fill("100/minute")
    form.get_by_role("button", name="Save changes").click()
    expect(page.locator("h1")).to_have_text("CI deploys (main)")
    expect(page.locator("#messages")).to_contain_text("Changes saved")
    attributes = ann.get(ann.url(f"/v1/api-keys/{key_id}")).json()["data"]["attributes"]
    assert (attributes["name"], attributes["rate-limit"]) == ("CI deploys (main)", "100/minute")

    # Rotate with a grace period: the new secret works, so does the old one until the grace ends.
    page.get_by_label("Keep the old secret working for").select_option("3600")
    page.get_by_role("button", name="Rotate secret").click()
    page.locator(CONFIRM).click()
    new_secret = read_secret_and_close(page)
    assert new_secret != secret
    assert key_works(base, new_secret) == 200
    assert key_works(base, secret) == 200  # the old one still authenticates, until the grace ends
    expect(page.locator("[data-grace]")).to_be_visible()

    # Suspend and reactivate.
    page.locator("[data-action=suspend]").click()
    expect(page.locator("[data-view=key-detail] .badge")).to_have_attribute("data-status", "suspended")
    assert key_works(base, new_secret) == 401
    page.goto(f"{base}/console/#/keys")
    page.get_by_label("Status").select_option("suspended")
    expect(page.locator(".key-row")).to_have_count(1)
    expect(page.locator(".key-row")).to_have_attribute("data-key-id", key_id)
    page.locator(".key-row a.name").click()
    page.locator("[data-action=reactivate]").click()
    expect(page.locator("[data-view=key-detail] .badge")).to_have_attribute("data-status", "active")
    assert key_works(base, new_secret) == 200

    # Revoke (confirmed), then delete the other key (confirmed).
    page.locator("[data-action=revoke]").click()
    page.locator(CONFIRM).click()
    expect(page.locator("[data-view=key-detail] .badge")).to_have_attribute("data-status", "revoked")
    assert key_works(base, new_secret) == 401
    page.goto(f"{base}/console/#/keys/{other_id}")
    page.locator("[data-action=delete]").click()
    page.locator(CONFIRM).click()
    expect(page.locator("#messages")).to_contain_text("was deleted")
    expect(page.locator(".key-row")).to_have_count(1)
    assert ann.get(ann.url(f"/v1/api-keys/{other_id}")).status_code == 404

    # At 375 px: no horizontal scroll on the list or a key's page; every control is labelled.
    page.set_viewport_size({"width": 375, "height": 800})
    check_page_is_clean(page)
    page.goto(f"{base}/console/#/keys/{key_id}")
    page.locator("[data-chart=usage]").wait_for()
    check_page_is_clean(page)
    assert unlabelled_controls(page) == []

    # Log out: the login form again, and the console's session has ended on the server.
    page.get_by_role("button", name="Log out").click()
    page.locator("form[data-form=login]").wait_for()
    expect(page.locator("#messages")).to_contain_text("logged out")
    check_page_is_clean(page)


def test_usage_appears_in_the_chart_after_verifications(watched, console_server, console_env):
    page, base = watched, console_server
    create_admin(console_env, "root@example.com", PASSWORD)
    admin = api_session(base, "root@example.com", PASSWORD)
    created = admin.post(admin.url("/v1/api-keys"), headers={"Content-Type": JSONAPI}, data=json.dumps(
        {"data": {"type": "api-keys", "attributes": {"name": "verifier", "scopes": ["keys:verify"]}}}))
    verifier = created.json()["data"]["attributes"]["secret"]

    sign_up_and_log_in(page, base, "bob@example.com", PASSWORD)
    key_id, secret = create_key(page, base, "Billing service", scopes=("keys:read",))
    outcomes = []
    for scopes in ([], [], ["keys:read"], ["keys:write"]):  # three valid, one with a scope it lacks
        answer = requests.post(f"{base}/v1/api-keys/verify", json={"key": secret, "scopes": scopes},
                               headers={"X-API-Key": verifier}, timeout=10)
        outcomes.append(answer.json()["meta"]["code"] if answer.ok else answer.status_code)
    assert outcomes == ["VALID", "VALID", "VALID", "INSUFFICIENT_SCOPES"], outcomes

    page.locator("[data-action=refresh-usage]").click()
    expect(page.locator("rect[data-outcome=VALID]")).to_have_count(1, timeout=10_000)
    expect(page.locator("rect[data-outcome=INSUFFICIENT_SCOPES]")).to_have_count(1)
    expect(page.locator(".legend")).to_contain_text("Valid: 3")
    expect(page.locator(".legend")).to_contain_text("Insufficient scopes: 1")
    page.get_by_text("Show the numbers as a table").click()
    expect(page.locator("[data-usage-table] tbody tr")).to_have_count(1)
    expect(page.locator("[data-usage-table] td[data-column=total]")).to_have_text("4")
    expect(page.locator("[data-usage-table] td[data-column=cost]")).to_have_text("3")  # only valid ones cost
    page.get_by_label("Group by").select_option("day")
    expect(page.locator("[data-usage-table] th").first).to_have_text("Day (UTC)")
    page.get_by_label("Group by").select_option("hour")
    expect(page.locator("[data-usage-table] th").first).to_have_text("Hour")
    page.get_by_text("Show the numbers as a table").click()
    expect(page.locator("[data-model-table]")).to_have_count(0)  # no LLM gateway calls yet

    gateway_calls(console_env, key_id, "local/tiny", calls=2, cost=13, tokens=(3, 10))
    page.locator("[data-action=refresh-usage]").click()
    row = page.locator("[data-model-table] tr[data-model='local/tiny']")
    expect(row.locator("td[data-column=requests]")).to_have_text("2", timeout=10_000)
    expect(row.locator("td[data-column=input-tokens]")).to_have_text("3")
    expect(row.locator("td[data-column=output-tokens]")).to_have_text("10")
    expect(row.locator("td[data-column=cost]")).to_have_text("13")
    screenshot(page, "console-usage", selector="[data-view=key-detail] section[aria-labelledby=usage-heading]")
    check_page_is_clean(page)

    # The account's summary has the same table, for every key of the account.
    page.goto(f"{base}/console/#/account")
    summary = page.locator("[data-section=usage] [data-summary=by-model]")
    expect(summary.get_by_role("heading")).to_have_text("By model")
    row = summary.locator("tr[data-model='local/tiny']")
    expect(row.locator("td")).to_have_text(["2", "3", "10", "13"])  # requests, input/output tokens, cost
    check_page_is_clean(page)


def create_keys_through_the_api(session, names):
    """Create a key per name (POST /v1/api-keys: quicker than the form), in that order."""
    for name in names:
        answer = session.post(session.url("/v1/api-keys"), headers={"Content-Type": JSONAPI}, data=json.dumps(
            {"data": {"type": "api-keys", "attributes": {"name": name}}}))
        assert answer.status_code == 201, answer.text


def test_the_key_list_sorts_by_name_and_pages(watched, console_server):
    page, base = watched, console_server
    sign_up_and_log_in(page, base, "flo@example.com", PASSWORD)
    expect(page.locator(".empty")).to_contain_text("no API keys yet")
    # 25 keys (a page holds 20), created out of the names' order: "Newest first" is neither name order.
    names = [f"key {n * 7 % 25:02d}" for n in range(25)]
    create_keys_through_the_api(api_session(base, "flo@example.com", PASSWORD), names)
    rows = page.locator(".key-row a.name")
    pages = page.locator("nav.pagination")

    page.get_by_label("Sort").select_option("name")
    expect(rows).to_have_text(sorted(names)[:20])
    expect(page).to_have_url(re.compile(r"#/keys\?sort=name$"))
    page.get_by_label("Sort").select_option("-name")
    expect(rows).to_have_text(sorted(names, reverse=True)[:20])
    expect(pages).to_contain_text("Page 1 of 2 · 25 keys")
    expect(pages.get_by_role("button", name="Previous page")).to_be_disabled()

    pages.get_by_role("button", name="Next page").click()
    expect(rows).to_have_text(sorted(names, reverse=True)[20:])
    expect(page).to_have_url(re.compile(r"#/keys\?sort=-name&page=2$"))
    expect(pages).to_contain_text("Page 2 of 2")
    expect(pages.get_by_role("button", name="Next page")).to_be_disabled()

    pages.get_by_role("button", name="Previous page").click()
    expect(rows).to_have_text(sorted(names, reverse=True)[:20])
    expect(page).to_have_url(re.compile(r"#/keys\?sort=-name$"))
    expect(pages).to_contain_text("Page 1 of 2")
    check_page_is_clean(page)


def release(page, held, count=1):
    """Wait until `count` requests are held by a route, then let every held one go on."""
    deadline = time.monotonic() + 10
    while len(held) < count:
        assert time.monotonic() < deadline, f"{len(held)} of {count} requests were held"
        page.wait_for_timeout(20)
    while held:
        held.pop().continue_()


def test_views_show_a_loading_state_while_the_api_answers(watched, console_server):
    page, base = watched, console_server
    sign_up_and_log_in(page, base, "gus@example.com", PASSWORD)
    gus = api_session(base, "gus@example.com", PASSWORD)
    create_keys_through_the_api(gus, ["slow"])
    key_id = gus.get(gus.url("/v1/api-keys")).json()["data"][0]["id"]
    # The API is slow: its answers about scopes and one key are held until the test lets them go.
    held = []
    page.route(lambda url: "/v1/scopes" in url or "/v1/api-keys/" in url, lambda route: held.append(route))

    page.goto(f"{base}/console/#/keys/new")
    expect(page.locator("[data-view=create-key] .loading")).to_have_text("Loading the scopes…")
    release(page, held)  # the scopes
    expect(page.locator("form[data-form=create-key]")).to_be_visible()
    expect(page.locator(".loading")).to_have_count(0)

    page.goto(f"{base}/console/#/keys/{key_id}")
    expect(page.locator(".loading")).to_have_text("Loading the key…")
    release(page, held)  # the key (the scopes are known by now)
    expect(page.locator("[data-view=key-detail] h1")).to_have_text("slow")
    usage = page.locator("[data-usage]")
    expect(usage.locator(".loading")).to_have_text("Loading usage…")
    expect(usage).to_have_attribute("aria-busy", "true")
    release(page, held)  # the key's usage
    expect(usage.locator("[data-chart=usage]")).to_be_visible()
    expect(page.locator(".loading")).to_have_count(0)
    expect(usage).not_to_have_attribute("aria-busy", "true")

    # A view that fails ends its loading state: the error takes its place.
    page.unroute_all()
    page.goto(f"{base}/console/#/keys/999999")
    expect(page.locator(".form-errors")).to_contain_text("not found", ignore_case=True)
    expect(page.locator(".loading")).to_have_count(0)
    check_page_is_clean(page)


def gateway_calls(env, key_id, model, calls, cost, tokens):
    """Usage of the LLM gateway's calls as its flush writes it (tests/test_gateway.py drives the gateway
    itself): a counter row of this hour for `model`."""
    engine = create_engine(env["DATABASE_URL"])
    try:
        with engine.begin() as connection:
            hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)
            connection.execute(text(
                "INSERT INTO key_usage (key_id, hour, outcome, model, count, cost, input_tokens, output_tokens) "
                "VALUES (:key, :hour, 'VALID', :model, :calls, :cost, :input, :output)"),
                {"key": int(key_id), "hour": hour, "model": model, "calls": calls, "cost": cost, "input": tokens[0],
                 "output": tokens[1]})
    finally:
        engine.dispose()


def test_sign_out_everywhere_ends_every_session(watched, console_server):
    page, base = watched, console_server
    sign_up_and_log_in(page, base, "cy@example.com", PASSWORD)
    elsewhere = api_session(base, "cy@example.com", PASSWORD)
    assert elsewhere.get(elsewhere.url("/v1/api-keys")).status_code == 200
    page.get_by_role("button", name="Sign out everywhere").click()
    page.locator(CONFIRM).click()
    page.locator("form[data-form=login]").wait_for()
    expect(page.locator("#messages")).to_contain_text("Every session of your account has ended")
    assert elsewhere.get(elsewhere.url("/v1/api-keys")).status_code == 401
    check_page_is_clean(page)


def test_a_wrong_password_is_shown_on_the_form(watched, console_server):
    page, base = watched, console_server
    page.goto(f"{base}/console/#/login")
    form = page.locator("form[data-form=login]")
    form.get_by_label("Email").fill("nobody@example.com")
    form.get_by_label("Password").fill("not the password")
    form.get_by_role("button", name="Log in").click()
    expect(form.locator(".form-errors")).to_contain_text("Wrong email or password")
    page.goto(f"{base}/console/#/signup")
    form = page.locator("form[data-form=signup]")
    form.get_by_label("Email").fill("dee@example.com")
    form.get_by_label("Password").fill("short")
    form.get_by_role("button", name="Sign up").click()
    expect(form.locator("[data-field=password] .field-error")).to_be_visible()
    check_page_is_clean(page)


@pytest.fixture
def short_tokens_server(console_env):
    """A second server on the module's database whose access tokens last 2 seconds."""
    with gunicorn(dict(console_env, JWT_ACCESS_TOKEN_SECONDS="2"), workers=1) as base:
        yield base


def test_an_expired_access_token_is_refreshed_once_and_the_request_retried(watched, short_tokens_server):
    page, base = watched, short_tokens_server
    sign_up_and_log_in(page, base, "eve@example.com", PASSWORD)
    expect(page.locator(".empty")).to_contain_text("no API keys yet")  # the first listing is done
    refreshes, listings = [], []
    page.on("request", lambda request: request.url.endswith("/v1/auth/refresh") and refreshes.append(request))
    page.on("response", lambda answer: "/v1/api-keys?" in answer.url and listings.append(answer.status))
    time.sleep(2.5)  # the access token has expired; the refresh token has not
    page.get_by_label("Status").select_option("active")  # lists the keys again: 401, refresh, retry
    expect(page.locator(".empty")).to_contain_text("No key matches")
    assert len(refreshes) == 1 and listings == [401, 200]
    expect(page.locator("#nav")).to_contain_text("eve@example.com")  # still logged in
    check_page_is_clean(page)


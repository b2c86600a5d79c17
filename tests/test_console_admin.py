"""The console's account, activity and administration views in real Chromium (js/account.js,
js/audit.js, js/admin.js), checked through the API: what a person does in the page is what the
service recorded. Then the layout at 375 px and an axe-core audit of every view.

axe-core comes from npm (tests/clients, installed by scripts/test with `npm ci`). The console's CSP
refuses inline scripts, so `page.add_script_tag` is blocked; a script evaluated through the DevTools
protocol (`page.evaluate`) is not subject to the page's CSP, so axe's source is evaluated that way.
"""
import os
import re
import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from tests.console_helpers import (  # its fixtures are a plugin (tests/conftest.py)
    JSONAPI,
    create_admin,
    log_in,
    needs_chromium,
    new_page,
)
from tests.helpers import PASSWORD

pytestmark = needs_chromium

AXE = Path(__file__).parent / "clients" / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 375, "height": 800}
BLOCKING_IMPACTS = {"serious", "critical"}


# --- Accounts and keys, made through the API -----------------------------------------------------

def unique_email(name):
    return f"{name}-{uuid.uuid4().hex[:8]}@example.com"


class Account:
    """An account, logged in through the API: `get`, `post`, `patch` send JSON:API documents."""

    def __init__(self, base, email, password=PASSWORD):
        self.base, self.email, self.password = base, email, password
        answer = requests.post(f"{base}/v1/auth/login", json={"email": email, "password": password}, timeout=10)
        answer.raise_for_status()
        meta = answer.json()["meta"]
        self.id = meta["user_id"]
        self.headers = {"Authorization": f"Bearer {meta['access_token']}", "Accept": JSONAPI,
                        "Content-Type": JSONAPI}

    def send(self, method, path, body=None, **params):
        return requests.request(method, f"{self.base}/v1{path}", json=body, params=params, headers=self.headers,
                                timeout=10)

    def create_key(self, name, **attributes):
        document = {"data": {"type": "api-keys", "attributes": {"name": name, **attributes}}}
        answer = self.send("POST", "/api-keys", document)
        assert answer.status_code == 201, answer.text
        return answer.json()["data"]

    def key(self, key_id):
        return self.send("GET", f"/api-keys/{key_id}").json()["data"]["attributes"]


def sign_up(base, name):
    """Create an account through the API; return it logged in."""
    email = unique_email(name)
    answer = requests.post(f"{base}/v1/users", json={"data": {"type": "users", "attributes": {
        "email": email, "password": PASSWORD}}}, headers={"Content-Type": JSONAPI}, timeout=10)
    assert answer.status_code == 201, answer.text
    return Account(base, email)


def use_key(base, secret, times):
    """Call the API `times` with the key; return the statuses."""
    headers = {"X-API-Key": secret, "Accept": JSONAPI}
    return [requests.get(f"{base}/v1/api-keys", headers=headers, timeout=10).status_code for _ in range(times)]


@pytest.fixture(scope="module")
def admin(console_server, console_env):
    """An administrator's account (made with manage.py, as an operator would)."""
    email = unique_email("root")
    create_admin(console_env, email, PASSWORD)
    return Account(console_server, email)


# --- The page ----------------------------------------------------------------------------------------

def script_errors(page):
    """The page's console errors, less Chromium's own note of each 4xx answer (expected here)."""
    return [text for text in page.console_errors if not text.startswith("Failed to load resource")]


def show(page, base, path, view):
    """Go to the console's `path` (a hash route, the tokens kept: same document) and wait for the view."""
    page.goto(f"{base}/console/#{path}")
    page.locator(f"[data-view={view}]").wait_for()


def confirm(page):
    page.locator("dialog[data-dialog=confirm] button[value=confirm]").click()
    page.locator("dialog[data-dialog=confirm]").wait_for(state="detached")


# --- Administration ----------------------------------------------------------------------------------

def test_an_admin_finds_an_account_and_makes_and_unmakes_it_admin_with_the_keyboard(page, console_server, admin):
    bea = sign_up(console_server, "bea")
    log_in(page, console_server, admin.email, PASSWORD)

    show(page, console_server, "/admin/users", "admin-users")
    search = page.get_by_label("Search by email")
    search.fill(bea.email.split("@")[0].upper())  # any part of the email, in any case
    search.press("Enter")
    page.get_by_text(f"1 account matches “{bea.email.split('@')[0].upper()}”.").wait_for()
    rows = page.locator("form.admin-row[data-user-id]")
    assert rows.count() == 1 and rows.first.get_attribute("data-email") == bea.email

    # Keyboard only: Tab to the button, Enter; the dialog opens on Cancel, Tab to confirm, Enter.
    make = rows.first.locator("button[data-action=make-admin]")
    for _ in range(40):
        page.keyboard.press("Tab")
        if make.evaluate("button => button === document.activeElement"):
            break
    else:
        pytest.fail("Make admin cannot be reached with Tab")
    page.keyboard.press("Enter")
    dialog = page.locator("dialog[data-dialog=confirm]")
    dialog.wait_for()
    assert dialog.locator("button[value=cancel]").evaluate("button => button === document.activeElement")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    rows.first.locator("button[data-action=unmake-admin]").wait_for()
    assert bea.send("GET", f"/users/{bea.id}").json()["data"]["attributes"]["is-admin"] is True
    assert "is now an administrator" in page.locator("#messages").inner_text()

    rows.first.locator("button[data-action=unmake-admin]").click()
    confirm(page)
    rows.first.locator("button[data-action=make-admin]").wait_for()
    assert admin.send("GET", f"/users/{bea.id}").json()["data"]["attributes"]["is-admin"] is False

    search.fill("nobody-has-this-email")
    search.press("Enter")
    page.get_by_text("No account's email contains “nobody-has-this-email”.").wait_for()

    # The whole trail has both changes, newest first, by this admin, about bea's account.
    show(page, console_server, "/admin/audit?action=user.update", "admin-audit")
    events = page.locator("li.event[data-action='user.update']")
    events.first.wait_for()
    for event in events.all()[:2]:
        text = event.inner_text()
        assert "You" in text and f"Account {bea.email}" in text and "is-admin" in text
    assert script_errors(page) == []


def test_an_admin_suspends_a_key_and_resets_its_quota_and_the_trails_show_it(page, console_server, admin):
    owner = sign_up(console_server, "cal")
    key = owner.create_key("abusive-batch-job", scopes=["keys:read"], quota={"limit": 2, "period": "day"})
    assert use_key(console_server, key["attributes"]["secret"], 3) == [200, 200, 429]
    assert owner.key(key["id"])["quota"]["used"] == 2
    log_in(page, console_server, admin.email, PASSWORD)

    show(page, console_server, f"/admin/users?q={owner.email}", "admin-users")
    page.get_by_role("link", name=f"Keys of {owner.email}").click()
    row = page.locator(f"form.admin-row[data-key-id='{key['id']}']")
    row.wait_for()
    assert "Quota: 2 of 2 used this day" in row.inner_text()

    row.locator("button[data-action=reset-quota]").click()
    confirm(page)
    row.get_by_text("Quota: 0 of 2 used this day").wait_for()
    assert owner.key(key["id"])["quota"]["used"] == 0

    row.locator("button[data-action=suspend]").click()
    confirm(page)
    row.locator(".badge.suspended").wait_for()
    assert owner.key(key["id"])["status"] == "suspended"
    refused = requests.get(f"{console_server}/v1/api-keys", headers={"X-API-Key": key["attributes"]["secret"]},
                           timeout=10)
    assert refused.status_code == 401 and refused.json()["errors"][0]["code"] == "SUSPENDED"
    assert row.locator("button[data-action=suspend]").count() == 0
    assert row.locator("button[data-action=reactivate]").count() == 1

    # The whole trail, filtered in the form: this admin's suspensions.
    show(page, console_server, "/admin/audit", "admin-audit")
    form = page.locator("form[data-form=audit-filters]")
    form.get_by_label("Action").select_option("key.suspend")
    form.get_by_label("Actor").fill(admin.email)
    form.get_by_role("button", name="Apply filters").click()
    page.wait_for_function("""() => {
      const items = [...document.querySelectorAll("li.event")];
      return items.length > 0 && items.every(item => item.dataset.action === "key.suspend");
    }""")
    assert "action=key.suspend" in page.url
    events = page.locator("li.event")
    assert "abusive-batch-job" in events.first.inner_text() and owner.email in events.first.inner_text()
    # Filters the API refuses are shown in words, in the form.
    form = page.locator("form[data-form=audit-filters]")
    form.get_by_label("Actor").fill("nobody@example.com")
    form.get_by_role("button", name="Apply filters").click()
    form.get_by_text("Unknown account: No account has the email nobody@example.com.").wait_for()

    # The owner's own trail shows both actions, by "an administrator" (whose account it may not see).
    page.locator("#nav [data-action=logout]").click()
    page.locator("form[data-form=login]").wait_for()
    log_in(page, console_server, owner.email, PASSWORD)
    show(page, console_server, "/audit", "audit")
    page.locator("li.event[data-action='key.suspend']").wait_for()
    for action in ("key.suspend", "key.quota_reset"):
        event = page.locator(f"li.event[data-action='{action}']")
        assert "An administrator" in event.inner_text() and "abusive-batch-job" in event.inner_text()
    assert script_errors(page) == []


def test_a_non_admin_is_told_the_admin_pages_are_for_administrators(page, console_server):
    dan = sign_up(console_server, "dan")
    log_in(page, console_server, dan.email, PASSWORD)
    assert page.locator("#nav a[href='#/admin']").count() == 0
    page.goto(f"{console_server}/console/#/admin/users")
    page.get_by_role("heading", name="Admins only").wait_for()


# --- The audit trail ------------------------------------------------------------------------------

def test_the_activity_page_pages_through_events_in_the_viewers_time_zone(browser, console_server):
    eve = sign_up(console_server, "eve")
    key = eve.create_key("nightly")
    for n in range(22):  # with the sign-up, the creation and two logins: 26 events, two pages of 20
        answer = eve.send("PATCH", f"/api-keys/{key['id']}",
                          {"data": {"type": "api-keys", "id": key["id"], "attributes": {"description": f"run {n}"}}})
        assert answer.status_code == 200, answer.text
    page = new_page(browser, timezone_id="Pacific/Auckland", locale="en-US")
    log_in(page, console_server, eve.email, PASSWORD)

    show(page, console_server, "/audit", "audit")
    events = page.locator("li.event")
    events.first.wait_for()
    assert events.count() == 20
    assert events.first.get_attribute("data-action") == "auth.login"  # the console's own, newest first
    update = events.nth(1)
    assert update.get_attribute("data-action") == "key.update"
    assert "You" in update.inner_text() and "nightly" in update.inner_text() and "description" in update.inner_text()
    stamp = update.locator("time")
    local = datetime.fromisoformat(stamp.get_attribute("datetime")).astimezone(ZoneInfo("Pacific/Auckland"))
    expected = f"{local.strftime('%b')} {local.day}, {local.year}, {local.strftime('%I:%M %p').lstrip('0')}"
    assert stamp.inner_text() == expected  # e.g. "Nov 24, 2026, 10:09 PM": Auckland's time, not UTC

    page.get_by_role("link", name="Next →").click()
    page.get_by_text("Page 2 of 2").wait_for()
    page.locator("li.event[data-action='user.create']").wait_for()
    assert page.locator("li.event").count() == 6
    assert script_errors(page) == []
    page.context.close()


# --- The account page -------------------------------------------------------------------------------

def test_the_account_page_summarises_usage_and_changes_the_password_and_the_email(page, console_server):
    fay = sign_up(console_server, "fay")
    key = fay.create_key("reporting", scopes=["keys:read"], quota={"limit": 2, "period": "day"})
    assert use_key(console_server, key["attributes"]["secret"], 3) == [200, 200, 429]
    log_in(page, console_server, fay.email, PASSWORD)

    show(page, console_server, "/account", "account")
    figures = page.locator("[data-figure]")
    figures.first.wait_for()
    values = dict(zip(figures.evaluate_all("items => items.map(item => item.dataset.figure)"),
                      page.locator("[data-figure] dd").all_inner_texts(), strict=True))
    assert values == {"total": "3", "errors": "1", "rate-limited": "0", "cost": "0"}
    assert "Over quota" in page.locator(".usage-summary").inner_text()
    assert page.locator(".busiest-keys li").all_inner_texts() == ["reporting 3 requests"]

    form = page.locator("form[data-form=account-password]")
    new_password = "a brand new passphrase"
    form.get_by_label("Current password").fill("not my password at all")
    form.get_by_label("New password", exact=True).fill(new_password)
    form.get_by_label("Repeat the new password").fill(new_password + "!")
    form.get_by_role("button", name="Change password").click()
    form.get_by_text("Passwords differ: Type the same new password twice.").wait_for()

    form.get_by_label("Repeat the new password").fill(new_password)
    form.get_by_role("button", name="Change password").click()
    form.get_by_text(re.compile(r"^Current password required: .*current password")).wait_for()
    assert form.get_by_label("Current password").get_attribute("aria-invalid") == "true"

    # A 429 says when to try again (the service's own limit is high in these tests: fake one answer).
    def too_many(route):
        route.fulfill(status=429, headers={"Retry-After": "42", "Content-Type": JSONAPI}, body=(
            '{"errors": [{"status": "429", "title": "Too many requests", "detail": "10 per 1 hour"}]}'))
    page.route("**/v1/users/*", too_many)
    form.get_by_label("Current password").fill(PASSWORD)
    form.get_by_role("button", name="Change password").click()
    form.get_by_text("Too many requests: 10 per 1 hour Try again in 42 seconds.").wait_for()
    page.unroute("**/v1/users/*", too_many)

    form.get_by_role("button", name="Change password").click()
    page.get_by_text("Your password is changed.").wait_for()
    assert requests.post(f"{console_server}/v1/auth/login", json={"email": fay.email, "password": new_password},
                         timeout=10).status_code == 200

    email_form = page.locator("form[data-form=account-email]")
    new_email = unique_email("fay-renamed")
    email_form.get_by_label("New email").fill(new_email.upper())
    email_form.get_by_label("Current password").fill(new_password)
    email_form.get_by_role("button", name="Change email").click()
    page.get_by_text(f"Your email is now {new_email}.").wait_for()
    # The password change ended every other session (the API's one above too): log in anew.
    assert Account(console_server, new_email, new_password).send("GET", f"/users/{fay.id}").json()["data"][
        "attributes"]["email"] == new_email
    assert page.locator("#nav .who").inner_text() == new_email
    assert script_errors(page) == []


def test_deleting_the_account_asks_first_then_logs_out(page, console_server):
    gus = sign_up(console_server, "gus")
    log_in(page, console_server, gus.email, PASSWORD)
    show(page, console_server, "/account", "account")

    page.get_by_role("button", name="Delete account…").click()
    page.locator("dialog[data-dialog=confirm] button[value=cancel]").click()
    assert gus.send("GET", f"/users/{gus.id}").status_code == 200

    page.get_by_role("button", name="Delete account…").click()
    confirm(page)
    page.locator("form[data-form=login]").wait_for()
    page.get_by_text("Your account has been deleted.").wait_for()
    assert requests.post(f"{console_server}/v1/auth/login", json={"email": gus.email, "password": PASSWORD},
                         timeout=10).status_code == 401


# --- Layout and accessibility ---------------------------------------------------------------------

# Every element's box inside the viewport's width, and no content spilling out of its box (a long
# word in a <pre>, a fixed-width child); a box that scrolls its content itself (overflow-x: auto)
# may hold wider content. `.skip-link` waits off-screen until focused.
OVERFLOWING = """width => [...document.querySelectorAll("body *")]
  .filter(element => !element.closest(".skip-link, .visually-hidden, input, select, textarea"))
  .filter(element => {
    const box = element.getBoundingClientRect();
    if (box.width === 0) return false;
    const spills = element.scrollWidth > element.clientWidth + 1
      && getComputedStyle(element).overflowX === "visible";
    return box.left < -0.5 || box.right > width + 0.5 || spills;
  })
  .map(element => `${element.tagName}.${element.className}: right edge at ${element.getBoundingClientRect().right}, \
content ${element.scrollWidth} wide`)"""


@pytest.fixture(scope="module")
def busy_admin(admin, console_server):
    """The admin with a key of a long name, a quota and a budget (the widest rows), and some usage."""
    key = admin.create_key("a-key-with-a-rather-long-name-for-a-narrow-phone-screen", scopes=["keys:read"],
                           quota={"limit": 1000, "period": "day"}, budget={"limit": 500, "period": "month"},
                           tags=["production", "billing"])
    use_key(console_server, key["attributes"]["secret"], 2)
    return admin, key


def test_the_views_fit_a_375_pixel_screen(browser, console_server, busy_admin):
    admin, key = busy_admin
    page = new_page(browser, viewport=PHONE)
    log_in(page, console_server, admin.email, PASSWORD)
    for path, view in [("/keys", "keys"), ("/account", "account"), ("/audit", "audit"),
                       ("/admin/users", "admin-users"), (f"/admin/users/{admin.id}", "admin-user-keys"),
                       ("/admin/audit", "admin-audit")]:
        show(page, console_server, path, view)
        page.locator(".loading").wait_for(state="detached")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
        assert page.evaluate(OVERFLOWING, PHONE["width"]) == [], path
    assert script_errors(page) == []
    page.context.close()


def axe_violations(page):
    """Run axe-core on the page; return its serious and critical violations, described."""
    if page.evaluate("typeof window.axe") == "undefined":
        page.evaluate(AXE.read_text())  # through DevTools: the page's CSP forbids an inline <script>
    violations = page.evaluate("axe.run(document, {resultTypes: ['violations']}).then(result => result.violations)")
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[node['target'] for node in v['nodes']]}"
            for v in violations if v["impact"] in BLOCKING_IMPACTS]


def test_axe_finds_no_serious_or_critical_violation(page, console_server, busy_admin):
    if not AXE.exists():
        if not os.environ.get("CI"):
            pytest.skip("needs axe-core: `npm ci` in tests/clients")
        pytest.fail("CI needs axe-core in tests/clients/node_modules (npm ci)")
    admin, key = busy_admin
    found = {}
    page.goto(f"{console_server}/console/#/login")
    page.locator("form[data-form=login]").wait_for()
    found["/login"] = axe_violations(page)
    log_in(page, console_server, admin.email, PASSWORD)  # on the key list
    page.locator(".loading").wait_for(state="detached")
    found["/keys"] = axe_violations(page)
    views = [f"/keys/{key['id']}", "/account", "/audit", "/admin/users", f"/admin/users/{admin.id}", "/admin/audit"]
    for path in views:
        before = page.title()
        page.goto(f"{console_server}/console/#{path}")
        # The router names the tab after the view's heading once the view is drawn; each view here
        # has a heading of its own.
        page.wait_for_function("before => document.title !== before", arg=before)
        page.locator(".loading").wait_for(state="detached")
        found[path] = axe_violations(page)
    assert {path: issues for path, issues in found.items() if issues} == {}

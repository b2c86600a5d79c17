// The console's entry point: the router, the navigation, and every view module. View modules
// register their routes when imported (route() from here); the router comes from router.js, imported
// first, so a view module may call route() while this module is still being evaluated.

export { route, navigate, hashQuery } from "./router.js";
import { start, navigate } from "./router.js";
import { currentUser, logout, logoutAll, onSessionChange } from "./api.js";
import { confirmAction, describeError, h, notify } from "./ui.js";

import "./session.js"; // log in, sign up
import "./keys.js"; // the key list and the creation form
import "./key-detail.js"; // one key: edit, actions, usage
import "./account.js";
import "./audit.js";
import "./admin.js";

// Links shown to a logged-in account; `admin` ones to administrators only.
const SIGNED_IN_LINKS = [
  { href: "#/keys", label: "Keys" },
  { href: "#/account", label: "Account" },
  { href: "#/audit", label: "Activity" },
  { href: "#/admin", label: "Admin", admin: true },
];
const SIGNED_OUT_LINKS = [
  { href: "#/login", label: "Log in" },
  { href: "#/signup", label: "Sign up" },
];

/** Draw the navigation for the current account (or none). */
function renderNav() {
  const nav = document.getElementById("nav");
  const user = currentUser();
  const links = user ? SIGNED_IN_LINKS.filter((link) => !link.admin || user.isAdmin) : SIGNED_OUT_LINKS;
  const items = links.map((link) => h("li", null, h("a", { href: link.href }, link.label)));
  if (user) {
    items.push(
      h("li", { class: "who" }, h("span", { title: user.email }, user.email)),
      h("li", null, h("button", { type: "button", class: "link", "data-action": "logout", onclick: signOut }, "Log out")),
      h("li", null, h("button", { type: "button", class: "link", "data-action": "logout-all", onclick: signOutEverywhere }, "Sign out everywhere")),
    );
  }
  nav.replaceChildren(h("ul", null, items));
  markCurrentLink();
}

/** Mark the link of the current view with aria-current (styled, and read out by screen readers). */
function markCurrentLink() {
  const section = window.location.hash.split(/[/?]/)[1] || "";
  for (const link of document.querySelectorAll("#nav a")) {
    const current = link.getAttribute("href").split("/")[1] === section;
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

let endingNotice = null; // what to say when the session ends because the person ended it

async function signOut() {
  endingNotice = "You are logged out.";
  try {
    await logout(); // ends the session locally even when the API cannot be reached
  } catch {
    // Nothing to show: the tokens are forgotten either way.
  }
}

async function signOutEverywhere() {
  const confirmed = await confirmAction(
    "This ends every session of your account, on every device and browser, including this one. API keys keep working.",
    { title: "Sign out everywhere?", confirmLabel: "Sign out everywhere" });
  if (!confirmed) return;
  endingNotice = "Every session of your account has ended.";
  try {
    await logoutAll();
  } catch (error) {
    endingNotice = null;
    notify(describeError(error), "error");
  }
}

// Whoever ends the session (the person, or the API: a revoked session, an expired refresh token),
// the console forgets the tokens and shows the login form.
onSessionChange((user) => {
  renderNav();
  if (!user) {
    navigate("/login", endingNotice || "Your session has ended. Log in again.");
    endingNotice = null;
  }
});
window.addEventListener("hashchange", markCurrentLink);

// The skip link moves focus to the view without changing the hash (the hash is the route).
document.querySelector(".skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("view").focus();
});

renderNav();
start();

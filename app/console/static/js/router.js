// A hash router: #/keys, #/keys/42. Views register themselves with route(); the server only ever
// serves index.html, so a bookmark of any view works and no server route is needed per view.

import { ApiError, currentUser } from "./api.js";
import { clearNotice, describeError, h, notify } from "./ui.js";

const routes = [];
let navigation = 0; // the latest navigation's number: an older, slower render is discarded

/** Register a view: `pattern` like "/keys/:id"; `render(container, params)` may be async.
 * Options: `public` (no login needed: log in, sign up), `admin` (admins only), `title`. */
export function route(pattern, render, { public: isPublic = false, admin = false, title = null } = {}) {
  const names = [];
  const source = pattern.replace(/\/:([A-Za-z][\w-]*)/g, (_, name) => {
    names.push(name);
    return "/([^/]+)";
  });
  routes.push({ regex: new RegExp(`^${source}/?$`), names, render, isPublic, admin, title });
}

let pendingNotice = null; // a message for the view navigate() goes to, shown once it is drawn

/** Go to `path` ("/keys/42"), then announce `notice` if given (e.g. "You are logged out."). */
export function navigate(path, notice = null) {
  pendingNotice = notice;
  if (window.location.hash === `#${path}`) render();
  else window.location.hash = `#${path}`;
}

/** The current view's path ("/keys" for "#/keys?x", "" when the hash is not a route). */
function currentPath() {
  const hash = window.location.hash;
  return hash.startsWith("#/") ? decodeURI(hash.slice(1).split("?")[0]) : "";
}

/** The current hash's query ("#/keys?status=active" -> URLSearchParams), for views' own state. */
export function hashQuery() {
  const hash = window.location.hash;
  const at = hash.indexOf("?");
  return new URLSearchParams(at === -1 ? "" : hash.slice(at + 1));
}

function match(path) {
  for (const candidate of routes) {
    const found = path.match(candidate.regex);
    if (found) {
      const params = Object.fromEntries(candidate.names.map((name, i) => [name, decodeURIComponent(found[i + 1])]));
      return { ...candidate, params };
    }
  }
  return null;
}

/** Render the view of the current hash in <main id="view"> (on a hashchange `event`, only when the
 * new hash is a route: "#view" is an in-page anchor). */
export async function render(event = null) {
  const hash = window.location.hash;
  if (event && hash && hash !== "#" && !hash.startsWith("#/")) return;
  const path = currentPath() || (currentUser() ? "/keys" : "/login");
  const main = document.getElementById("view");
  const number = ++navigation;
  // Each navigation renders into a fresh container: a slow, older render fills a detached node.
  const container = h("div", { class: "view-container" });
  main.replaceChildren(container);
  clearNotice();
  if (pendingNotice) {
    notify(pendingNotice);
    pendingNotice = null;
  }
  const found = match(path);
  if (!found) {
    container.append(h("h1", null, "Not found"), h("p", null, "There is no such page. ", h("a", { href: "#/keys" }, "Go to your keys.")));
    return focusHeading(main, number);
  }
  if (!found.isPublic && !currentUser()) {
    navigate(`/login?next=${encodeURIComponent(path)}`);
    return;
  }
  if (found.admin && !currentUser().isAdmin) {
    container.append(h("h1", null, "Admins only"), h("p", null, "This page is for administrators."));
    return focusHeading(main, number);
  }
  try {
    await found.render(container, found.params);
  } catch (error) {
    if (number !== navigation) return;
    if (error instanceof ApiError && error.status === 401 && !currentUser()) return; // session ended: login shown
    container.querySelectorAll(".loading").forEach((node) => node.remove()); // the view's loading state is over
    container.append(h("div", { class: "form-errors", role: "alert" }, h("p", null, describeError(error))));
  }
  focusHeading(main, number, found.title);
}

/** Move focus to the new view's heading so screen readers announce it, and name the tab after the
 * route's title (or the heading). */
function focusHeading(main, number, title = null) {
  if (number !== navigation) return;
  const heading = main.querySelector("h1");
  const name = title || (heading && heading.textContent);
  document.title = name ? `${name} · Latchkey` : "Latchkey console";
  const focusInView = main.contains(document.activeElement) && document.activeElement !== main;
  if (heading && !focusInView) { // a view that focused a field itself keeps it
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

/** Start routing: render now and on every hash change. */
export function start() {
  window.addEventListener("hashchange", render);
  render();
}

// Administration (#/admin, #/admin/users, #/admin/users/<id>): find accounts by email, make or
// unmake administrators, and act on an account's keys: suspend an abusive one, reset a quota or a
// budget. Everything goes through the public API an administrator's session may call; the API
// checks every permission again, so these pages only spare a non-admin an error.
//
// Each row is its own <form>, so an action's error is shown in words next to the row it concerns
// (ui.showErrors), not in a distant banner.

import { api, currentUser, updateCurrentUser } from "./api.js";
import { adminTabs, pageNumber, pagination } from "./audit.js";
import { hashQuery, navigate, route } from "./router.js";
import { clearErrors, confirmAction, empty, h, loading, notify, showErrors, timeElement } from "./ui.js";

const PAGE_SIZE = 20;

/** Run `action` for a row's button: the button is disabled meanwhile; the error goes in the row. */
async function rowAction(row, button, action) {
  button.disabled = true;
  clearErrors(row);
  try {
    await action();
  } catch (error) {
    showErrors(row, error);
  } finally {
    button.disabled = false;
  }
}

function badge(text, kind) {
  return h("span", { class: `badge ${kind}` }, text);
}

// --- Users ------------------------------------------------------------------------------------------

/** The list's query: `search` anywhere in the email, in any case (the JSON filter's ilike). A % or _
 * typed in the box is a wildcard too, which in a search box does no harm. */
function userQuery(search, page) {
  const params = { sort: "email", "page[size]": PAGE_SIZE, "page[number]": page };
  if (search) params.filter = JSON.stringify([{ name: "email", op: "ilike", val: `%${search}%` }]);
  return params;
}

function userRow(user) {
  const row = h("form", { class: "admin-row", "data-user-id": user.id, "data-email": user.attributes.email, novalidate: true });
  drawUserRow(row, user);
  return h("li", null, row);
}

function drawUserRow(row, user) {
  const email = user.attributes.email;
  const isAdmin = Boolean(user.attributes["is-admin"]);
  const isMe = currentUser() && currentUser().id === user.id;
  const label = isAdmin ? "Remove admin" : "Make admin";
  // The accessible name starts with the visible words (speech input users say what they see).
  const toggle = h("button", { type: "button", "data-action": isAdmin ? "unmake-admin" : "make-admin",
    "aria-label": `${label}: ${email}` }, label);
  toggle.addEventListener("click", () => rowAction(row, toggle, () => setAdmin(row, user, !isAdmin)));
  row.replaceChildren(
    h("div", { class: "admin-row-main" },
      h("span", { class: "admin-row-name" }, email),
      h("span", { class: "admin-row-badges" },
        isAdmin ? badge("Administrator", "admin") : null,
        isMe ? badge("You", "you") : null)),
    h("p", { class: "admin-row-meta" }, `Account #${user.id} · joined `, timeElement(user.attributes["created-at"])),
    h("div", { class: "actions", "data-field": "is-admin" },
      h("a", { class: "button-link", href: `#/admin/users/${encodeURIComponent(user.id)}`, "aria-label": `Keys of ${email}` }, "Keys"),
      toggle));
}

/** PATCH is-admin after a confirmation; redraw the row from the answer. */
async function setAdmin(row, user, makeAdmin) {
  const email = user.attributes.email;
  const isMe = currentUser() && currentUser().id === user.id;
  const confirmed = await confirmAction(
    makeAdmin
      ? `${email} will see and change every account and every key, and use these pages.`
      : `${email} will keep their own account and keys only.${isMe ? " That is you: you will lose access to these pages." : ""}`,
    { title: makeAdmin ? "Make this account an administrator?" : "Remove administrator rights?",
      confirmLabel: makeAdmin ? "Make administrator" : "Remove admin", danger: !makeAdmin });
  if (!confirmed) return;
  const document = await api.patch(`/users/${encodeURIComponent(user.id)}`,
    { data: { type: "users", id: user.id, attributes: { "is-admin": makeAdmin } } });
  drawUserRow(row, document.data);
  notify(makeAdmin ? `${email} is now an administrator.` : `${email} is no longer an administrator.`);
  if (isMe && !makeAdmin) {
    updateCurrentUser({ isAdmin: false });
    navigate("/account");
  }
}

function searchForm(search) {
  const form = h("form", { class: "card admin-search", role: "search", "aria-label": "Search accounts", novalidate: true },
    h("div", { class: "field", "data-field": "email" },
      h("label", { for: "admin-user-search" }, "Search by email"),
      h("div", { class: "admin-search-row" },
        h("input", { id: "admin-user-search", type: "search", name: "q", value: search, autocomplete: "off",
          placeholder: "e.g. ann@ or example.com" }),
        h("button", { type: "submit", class: "primary" }, "Search"))));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = form.elements.q.value.trim();
    navigate(q ? `/admin/users?${new URLSearchParams({ q })}` : "/admin/users");
  });
  return form;
}

async function renderUsers(container) {
  const query = hashQuery();
  const search = (query.get("q") || "").trim();
  const page = pageNumber(query);
  const form = searchForm(search);
  const results = h("div", { class: "admin-results", "aria-live": "polite" });
  const section = h("section", { "data-view": "admin-users" },
    h("h1", null, "Users"), adminTabs("users"), form, results);
  container.append(section);
  loading(results, "Loading accounts…");
  let document;
  try {
    document = await api.get("/users", userQuery(search, page));
  } catch (error) {
    results.replaceChildren();
    showErrors(form, error);
    return;
  }
  const count = document.meta.count;
  if (!document.data.length) {
    empty(results, search ? `No account's email contains “${search}”.` : "There are no accounts.");
    return;
  }
  results.replaceChildren(
    h("p", { class: "hint", "data-count": count },
      search ? `${count === 1 ? "1 account matches" : `${count} accounts match`} “${search}”.` : `${count} account${count === 1 ? "" : "s"}.`),
    h("ul", { class: "admin-list" }, document.data.map(userRow)));
  const hrefFor = (n) => `#/admin/users?${new URLSearchParams(search ? { q: search, page: n } : { page: n })}`;
  section.append(pagination(page, count, PAGE_SIZE, hrefFor, "Account pages") || "");
}

// --- One account's keys ------------------------------------------------------------------------------

/** "12 of 1,000 used this day · resets <time>" for a quota or budget; null when the key has none. */
function allowanceText(allowance, noun) {
  if (!allowance) return null;
  const used = allowance.used === null ? "unknown" : allowance.used.toLocaleString();
  const period = allowance.period === "total" ? "in total" : `this ${allowance.period}`;
  return [`${noun}: ${used} of ${allowance.limit.toLocaleString()} used ${period}`,
    allowance["resets-at"] ? [" · resets ", timeElement(allowance["resets-at"])] : null];
}

// The actions a key's row offers, by what the key is now. Reactivating and resetting need an
// administrator's session, which is what these pages run with.
const KEY_ACTIONS = [
  { name: "suspend", label: "Suspend", when: (key) => key.attributes.status === "active", path: "suspend",
    confirm: (name) => ({ title: `Suspend ${name}?`, message: "Every request with this key is refused until it is reactivated. The owner sees the suspension in their activity.", confirmLabel: "Suspend key" }),
    done: (name) => `${name} is suspended.` },
  { name: "reactivate", label: "Reactivate", when: (key) => key.attributes.status === "suspended", path: "reactivate",
    done: (name) => `${name} is active again.` },
  { name: "reset-quota", label: "Reset quota", when: (key) => Boolean(key.attributes.quota), path: "quota/reset",
    confirm: (name) => ({ title: `Reset the quota of ${name}?`, message: "Its current quota window starts over at zero.", confirmLabel: "Reset quota", danger: false }),
    done: (name) => `The quota of ${name} starts over.` },
  { name: "reset-budget", label: "Reset budget", when: (key) => Boolean(key.attributes.budget), path: "budget/reset",
    confirm: (name) => ({ title: `Reset the budget of ${name}?`, message: "Its current budget window starts over at zero.", confirmLabel: "Reset budget", danger: false }),
    done: (name) => `The budget of ${name} starts over.` },
];

function keyRow(key) {
  const row = h("form", { class: "admin-row", "data-key-id": key.id, novalidate: true });
  drawKeyRow(row, key);
  return h("li", null, row);
}

function drawKeyRow(row, key) {
  const a = key.attributes;
  const buttons = KEY_ACTIONS.filter((action) => action.when(key)).map((action) => {
    const button = h("button", { type: "button", "data-action": action.name, class: action.name === "suspend" ? "danger" : null,
      "aria-label": `${action.label}: ${a.name}` }, action.label);
    button.addEventListener("click", () => rowAction(row, button, () => keyAction(row, key, action)));
    return button;
  });
  row.replaceChildren(
    h("div", { class: "admin-row-main" },
      h("a", { class: "admin-row-name", href: `#/keys/${encodeURIComponent(key.id)}` }, a.name),
      h("span", { class: "admin-row-badges" }, badge(a.status, a.status))),
    h("p", { class: "admin-row-meta" },
      h("span", { class: "mono" }, `${a.start}…${a.last4}`), ` · key #${key.id} · last used `, timeElement(a["last-used-at"])),
    a.quota || a.budget
      ? h("p", { class: "admin-row-meta" }, allowanceText(a.quota, "Quota"), a.quota && a.budget ? h("br") : null, allowanceText(a.budget, "Budget"))
      : null,
    buttons.length ? h("div", { class: "actions" }, buttons) : null);
}

async function keyAction(row, key, action) {
  const name = key.attributes.name;
  if (action.confirm && !(await confirmAction(action.confirm(name).message, action.confirm(name)))) return;
  const document = await api.post(`/api-keys/${encodeURIComponent(key.id)}/${action.path}`);
  drawKeyRow(row, document.data);
  notify(action.done(name));
  row.querySelector(".admin-row-name").focus(); // the clicked button may be gone from the redrawn row
}

async function renderUserKeys(container, { id }) {
  const section = h("section", { "data-view": "admin-user-keys" });
  container.append(section);
  loading(section, "Loading the account's keys…");
  const page = pageNumber(hashQuery());
  const [account, keys] = await Promise.all([
    api.get(`/users/${encodeURIComponent(id)}`),
    api.get(`/users/${encodeURIComponent(id)}/api-keys`, { sort: "-created-at", "page[size]": PAGE_SIZE, "page[number]": page }),
  ]);
  const email = account.data.attributes.email;
  const list = keys.data.length
    ? h("ul", { class: "admin-list" }, keys.data.map(keyRow))
    : h("p", { class: "empty" }, `${email} has no keys.`);
  section.replaceChildren(
    h("p", { class: "admin-back" }, h("a", { href: "#/admin/users" }, "← All users")),
    h("h1", null, `Keys of ${email}`),
    adminTabs("users"),
    h("p", { class: "hint" }, `Account #${id}${account.data.attributes["is-admin"] ? ", an administrator" : ""}; joined `,
      timeElement(account.data.attributes["created-at"]), `. ${keys.meta.count} key${keys.meta.count === 1 ? "" : "s"}.`),
    list,
    pagination(page, keys.meta.count, PAGE_SIZE, (n) => `#/admin/users/${encodeURIComponent(id)}?page=${n}`, "Key pages") || "");
}

route("/admin", renderUsers, { admin: true, title: "Users" });
route("/admin/users", renderUsers, { admin: true, title: "Users" });
route("/admin/users/:id", renderUserKeys, { admin: true, title: "Keys of an account" });

// The audit trail: one's own (#/audit) and, for administrators, everyone's with filters
// (#/admin/audit). Both read GET /v1/audit-events; the API decides what each viewer may see (an
// owner sees events about their account and keys, never another account's email).
//
// The page number and the filters live in the hash (#/admin/audit?action=key.suspend&page=2), so
// the back button, a reload and a bookmark show the same page.

import { ApiError, api, currentUser } from "./api.js";
import { hashQuery, navigate, route } from "./router.js";
import { clearErrors, empty, h, loading, showErrors, timeElement, uniqueId } from "./ui.js";

const PAGE_SIZE = 20;
// Who acted, with which key, on whose account, on which key: names instead of bare ids.
const INCLUDE = "actor,actor-key,subject,target";

// What each action means, in words. An action missing here is shown by its code alone.
export const ACTIONS = {
  "auth.login": "Logged in",
  "auth.login_failed": "Failed login",
  "auth.logout": "Logged out",
  "auth.logout_all": "Signed out everywhere",
  "auth.sessions_ended": "Other sessions ended",
  "user.create": "Account created",
  "user.update": "Account changed",
  "user.promote": "Made administrator (command line)",
  "user.delete": "Account deleted",
  "key.create": "Key created",
  "key.update": "Key changed",
  "key.suspend": "Key suspended",
  "key.reactivate": "Key reactivated",
  "key.rotate": "Key rotated",
  "key.revoke": "Key revoked",
  "key.delete": "Key deleted",
  "key.quota_reset": "Quota reset",
  "key.budget_reset": "Budget reset",
};

/** A page number from the hash query: a whole number from 1, else 1. */
export function pageNumber(query) {
  const page = Number.parseInt(query.get("page"), 10);
  return Number.isInteger(page) && page > 0 ? page : 1;
}

/** Links to the previous and next pages ("#/audit?page=2"), with "Page N of M"; null for one page.
 * `hrefFor(page)` builds a page's link, keeping the view's other parameters. */
export function pagination(page, count, pageSize, hrefFor, label) {
  const pages = Math.max(1, Math.ceil(count / pageSize));
  if (pages === 1) return null;
  return h("nav", { class: "pagination", "aria-label": label },
    page > 1 ? h("a", { href: hrefFor(page - 1), rel: "prev" }, "← Previous") : h("span"),
    h("span", null, `Page ${Math.min(page, pages)} of ${pages}`),
    page < pages ? h("a", { href: hrefFor(page + 1), rel: "next" }, "Next →") : h("span"));
}

/** Index a document's `included` resources by "type:id". */
function includedIndex(document) {
  return new Map((document.included || []).map((resource) => [`${resource.type}:${resource.id}`, resource]));
}

function related(event, name, included) {
  const linkage = event.relationships && event.relationships[name] && event.relationships[name].data;
  return linkage ? { id: linkage.id, resource: included.get(`${linkage.type}:${linkage.id}`) || null } : null;
}

/** Who acted, in words. A user the viewer may not see is an administrator acting on the viewer's
 * account or keys (only administrators act on others' things); no actor is an anonymous attempt. */
function describeActor(event, included) {
  const actor = related(event, "actor", included);
  const me = currentUser();
  let who;
  if (!actor) who = "Nobody signed in";
  else if (me && actor.id === me.id) who = "You";
  else if (actor.resource) who = actor.resource.attributes.email;
  else who = me && me.isAdmin ? `Account #${actor.id} (deleted)` : "An administrator";
  const key = related(event, "actor-key", included);
  if (!key) return who;
  const keyName = key.resource ? key.resource.attributes.name : `key #${key.id}`;
  return [who, h("span", { class: "hint" }, ` with the key ${keyName}`)];
}

/** What the event is about: the key acted on (and, when it is not the viewer's, whose it is), else
 * the account. */
function describeTarget(event, included) {
  const me = currentUser();
  const subject = related(event, "subject", included);
  const mine = Boolean(me && subject && subject.id === me.id);
  const key = related(event, "target", included);
  if (key) {
    const name = key.resource
      ? h("a", { href: `#/keys/${encodeURIComponent(key.id)}` }, key.resource.attributes.name)
      : `Key #${key.id} (deleted)`;
    const owner = subject && !mine && subject.resource ? h("span", { class: "hint" }, ` of ${subject.resource.attributes.email}`) : null;
    return [name, owner];
  }
  if (!subject) return "—";
  if (mine) return "Your account";
  return subject.resource ? `Account ${subject.resource.attributes.email}` : `Account #${subject.id}`;
}

function fact(label, ...value) {
  return h("div", null, h("dt", null, label), h("dd", null, ...value));
}

function eventItem(event, included) {
  const attributes = event.attributes;
  const changes = attributes.changes || [];
  return h("li", { class: "event", "data-action": attributes.action, "data-event-id": event.id },
    h("p", { class: "event-title" },
      h("strong", null, ACTIONS[attributes.action] || attributes.action), " ",
      h("code", null, attributes.action)),
    h("dl", { class: "event-facts" },
      fact("When", timeElement(attributes["created-at"])),
      fact("Who", describeActor(event, included)),
      fact("About", describeTarget(event, included)),
      changes.length ? fact("Changed", changes.join(", ")) : null,
      fact("From", attributes.ip || "—")));
}

/** Fetch one page of events (`filters`: query parameters) into `results`; return the document.
 * Throws ApiError, for the caller to show. */
async function loadEvents(results, filters, page, emptyText) {
  loading(results, "Loading events…");
  const document = await api.get("/audit-events", {
    ...filters, include: INCLUDE, "page[size]": PAGE_SIZE, "page[number]": page,
  });
  if (!document.data.length) {
    empty(results, page > 1 ? `There is no page ${page}: the list is shorter.` : emptyText);
  } else {
    const included = includedIndex(document);
    results.replaceChildren(h("ol", { class: "event-list" }, document.data.map((event) => eventItem(event, included))));
  }
  return document;
}

function hrefWith(path, query, page) {
  const next = new URLSearchParams(query);
  next.set("page", String(page));
  return `#${path}?${next}`;
}

async function renderOwnTrail(container) {
  const query = hashQuery();
  const page = pageNumber(query);
  const results = h("div", { class: "event-results" });
  const section = h("section", { "data-view": "audit" },
    h("h1", null, "Activity"),
    h("p", { class: "hint" }, "What happened to your account and your keys, and who did it. Times are in your time zone."),
    results);
  container.append(section);
  const document = await loadEvents(results, {}, page, "Nothing has happened on your account yet.");
  section.append(pagination(page, document.meta.count, PAGE_SIZE, (n) => hrefWith("/audit", query, n), "Activity pages") || "");
}

// --- Everyone's trail, for administrators ------------------------------------------------------

/** An error of the filter form in the API's shape, so showErrors puts it next to its field. */
function fieldError(field, title, detail) {
  return new ApiError(400, [{ status: "400", title, detail, source: { pointer: `/data/attributes/${field}` } }]);
}

/** "2026-11-23" (a day in the viewer's time zone) -> the ISO instant its midnight is, in UTC. */
function startOfDay(day, plusDays = 0) {
  const date = new Date(`${day}T00:00:00`);
  date.setDate(date.getDate() + plusDays);
  return date.toISOString();
}

/** Turn the form's values (from the hash) into the API's filters. An actor given by email is looked
 * up first (GET /v1/users?filter[email]=): the trail filters actors by account id. */
async function apiFilters(values) {
  const filters = {};
  if (values.action) filters["filter[action]"] = values.action;
  if (values.key) {
    if (!/^\d+$/.test(values.key)) throw fieldError("key", "Invalid key", "Give the key's number, e.g. 42.");
    filters["filter[target]"] = values.key;
  }
  if (values.actor) {
    if (/^\d+$/.test(values.actor)) {
      filters["filter[actor]"] = values.actor;
    } else {
      const users = await api.get("/users", { "filter[email]": values.actor.toLowerCase() });
      if (!users.data.length) throw fieldError("actor", "Unknown account", `No account has the email ${values.actor}.`);
      filters["filter[actor]"] = users.data[0].id;
    }
  }
  if (values.from && values.to && values.from > values.to) {
    throw fieldError("to", "Invalid dates", "The last day comes on or after the first day.");
  }
  const times = [];
  if (values.from) times.push({ name: "created-at", op: "ge", val: startOfDay(values.from) });
  if (values.to) times.push({ name: "created-at", op: "lt", val: startOfDay(values.to, 1) }); // the whole last day
  if (times.length) filters.filter = JSON.stringify(times);
  return filters;
}

const FILTER_NAMES = ["action", "actor", "key", "from", "to"];

function filterField(name, label, control, help) {
  const id = control.id || uniqueId(`audit-${name}`);
  control.id = id;
  const helpId = help ? `${id}-help` : null;
  if (helpId) control.setAttribute("aria-describedby", helpId);
  return h("div", { class: "field", "data-field": name },
    h("label", { for: id }, label), control, help ? h("p", { class: "help", id: helpId }, help) : null);
}

function filterForm(values) {
  const known = Object.entries(ACTIONS).map(([code, label]) => [code, `${label} (${code})`]);
  if (values.action && !(values.action in ACTIONS)) known.push([values.action, values.action]); // from a bookmark
  const action = h("select", { name: "action" },
    h("option", { value: "" }, "Any action"),
    known.map(([code, label]) => h("option", { value: code }, label)));
  action.value = values.action || "";
  const form = h("form", { class: "card audit-filters", "data-form": "audit-filters", novalidate: true, role: "search", "aria-label": "Filter the audit trail" },
    h("div", { class: "audit-filter-grid" },
      filterField("action", "Action", action),
      filterField("actor", "Actor", h("input", { type: "text", name: "actor", value: values.actor || "", autocomplete: "off" }), "Email or account number."),
      filterField("key", "Key number", h("input", { type: "text", name: "key", inputmode: "numeric", value: values.key || "", autocomplete: "off" })),
      filterField("from", "From (day)", h("input", { type: "date", name: "from", value: values.from || "" })),
      filterField("to", "To (day, included)", h("input", { type: "date", name: "to", value: values.to || "" }))),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Apply filters"),
      h("a", { href: "#/admin/audit" }, "Clear filters")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const name of FILTER_NAMES) {
      const value = form.elements[name].value.trim();
      if (value) query.set(name, value);
    }
    const text = query.toString();
    navigate(text ? `/admin/audit?${text}` : "/admin/audit");
  });
  return form;
}

async function renderAdminTrail(container) {
  const query = hashQuery();
  const page = pageNumber(query);
  const values = Object.fromEntries(FILTER_NAMES.map((name) => [name, (query.get(name) || "").trim()]));
  const form = filterForm(values);
  const results = h("div", { class: "event-results" });
  const section = h("section", { "data-view": "admin-audit" },
    h("h1", null, "Audit trail"),
    adminTabs("audit"),
    h("p", { class: "hint" }, "Every account's events, newest first. Times are in your time zone."),
    form, results);
  container.append(section);
  clearErrors(form);
  try {
    const filters = await apiFilters(values);
    const document = await loadEvents(results, filters, page, "No event matches these filters.");
    section.append(pagination(page, document.meta.count, PAGE_SIZE, (n) => hrefWith("/admin/audit", query, n), "Audit trail pages") || "");
  } catch (error) {
    results.replaceChildren();
    showErrors(form, error);
  }
}

/** The administrators' sub-navigation: users and the audit trail. */
export function adminTabs(current) {
  const tabs = [["users", "#/admin/users", "Users"], ["audit", "#/admin/audit", "Audit trail"]];
  return h("nav", { class: "admin-tabs", "aria-label": "Administration" },
    h("ul", null, tabs.map(([name, href, label]) =>
      h("li", null, h("a", { href, "aria-current": name === current ? "page" : null }, label)))));
}

route("/audit", renderOwnTrail, { title: "Activity" });
route("/admin/audit", renderAdminTrail, { admin: true, title: "Audit trail" });

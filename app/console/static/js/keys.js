// The key list (#/keys: search, filters, sort, pages) and the creation form (#/keys/new).
// The list's state is in the hash's query (#/keys?name=ci&status=active), so a reload of the
// filters, the back button and a bookmark all show the same list.

import { api } from "./api.js";
import { keyFields, loadScopes, readKeyFields } from "./key-form.js";
import { hashQuery, navigate, route } from "./router.js";
import { clearErrors, describeError, empty, h, loading, showErrors, showSecret, timeElement } from "./ui.js";

const PAGE_SIZE = 20;
const STATUSES = ["active", "suspended", "revoked", "expired"];
const SORTS = [
  ["-created-at", "Newest first"],
  ["created-at", "Oldest first"],
  ["name", "Name, A to Z"],
  ["-name", "Name, Z to A"],
  ["-last-used-at", "Recently used"],
  ["expires-at", "Expiring soonest"],
];
const SEARCH_DELAY_MS = 300; // wait for a pause in typing before asking the API

/** The status of a key as a badge: words, not only a colour. */
export function statusBadge(status) {
  return h("span", { class: `badge ${status}`, "data-status": status }, status);
}

/** How a key is recognised without its secret: its start and last four characters. */
export function keyHint(attributes) {
  return h("code", { class: "mono", title: "The start and end of the secret" }, `${attributes.start}…${attributes.last4}`);
}

/** The API's query parameters for the list's state. Search is a case-insensitive substring of the
 * name, through the JSON filter (filter[name] matches a whole name only); % and _ in it are
 * wildcards, as in SQL (the databases disagree on an escape character). */
function queryFor(state) {
  const params = { sort: state.sort, "page[size]": PAGE_SIZE, "page[number]": state.page > 1 ? state.page : null };
  if (state.name) {
    params.filter = JSON.stringify([{ name: "name", op: "ilike", val: `%${state.name}%` }]);
  }
  if (state.status) params["filter[status]"] = state.status;
  if (state.tag) params["filter[tag]"] = state.tag.trim().toLowerCase();
  return params;
}

function readState() {
  const query = hashQuery();
  const sort = query.get("sort");
  return {
    name: query.get("name") || "",
    status: STATUSES.includes(query.get("status")) ? query.get("status") : "",
    tag: query.get("tag") || "",
    sort: SORTS.some(([value]) => value === sort) ? sort : SORTS[0][0],
    page: Math.max(1, Number.parseInt(query.get("page"), 10) || 1),
  };
}

/** Keep the state in the hash without a navigation (replaceState fires no hashchange). */
function writeState(state) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(state)) {
    if (value && !(name === "page" && value === 1) && !(name === "sort" && value === SORTS[0][0])) query.set(name, value);
  }
  const text = query.toString();
  window.history.replaceState(null, "", `#/keys${text ? `?${text}` : ""}`);
}

function filtersForm(state, onChange) {
  const form = h("form", { class: "card filters", role: "search", "aria-label": "Filter keys", "data-form": "key-filters" },
    h("div", { class: "field" }, h("label", { for: "filter-name" }, "Search by name"),
      h("input", { id: "filter-name", name: "name", type: "search", value: state.name, autocomplete: "off" })),
    h("div", { class: "field" }, h("label", { for: "filter-status" }, "Status"),
      h("select", { id: "filter-status", name: "status" },
        h("option", { value: "" }, "Any status"),
        STATUSES.map((status) => h("option", { value: status, selected: state.status === status }, status)))),
    h("div", { class: "field" }, h("label", { for: "filter-tag" }, "Tag"),
      h("input", { id: "filter-tag", name: "tag", type: "text", value: state.tag, autocomplete: "off", spellcheck: "false" })),
    h("div", { class: "field" }, h("label", { for: "filter-sort" }, "Sort"),
      h("select", { id: "filter-sort", name: "sort" },
        SORTS.map(([value, label]) => h("option", { value, selected: state.sort === value }, label)))));
  let timer = null;
  const changed = () => {
    clearTimeout(timer);
    const elements = form.elements;
    onChange({ name: elements.name.value.trim(), status: elements.status.value, tag: elements.tag.value.trim(),
      sort: elements.sort.value, page: 1 });
  };
  form.addEventListener("input", (event) => {
    if (event.target.type === "search" || event.target.type === "text") {
      clearTimeout(timer);
      timer = setTimeout(changed, SEARCH_DELAY_MS);
    }
  });
  form.addEventListener("change", (event) => event.target.tagName === "SELECT" && changed());
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    changed();
  });
  return form;
}

function keyRow(key) {
  const a = key.attributes;
  return h("li", { class: "key-row", "data-key-id": key.id },
    h("div", null, h("a", { class: "name", href: `#/keys/${encodeURIComponent(key.id)}` }, a.name), " ", keyHint(a)),
    h("div", null, statusBadge(a.status), " ", (a.tags || []).map((tag) => h("span", { class: "tag" }, tag))),
    h("div", { class: "meta" },
      h("span", null, "Last used ", timeElement(a["last-used-at"])),
      h("span", null, "Created ", timeElement(a["created-at"])),
      a["expires-at"] && h("span", null, "Expires ", timeElement(a["expires-at"]))));
}

/** The page number a pagination link of the API points at. */
function pageOf(link) {
  return Number.parseInt(new URL(link, window.location.origin).searchParams.get("page[number]"), 10) || 1;
}

function pagination(document, state, onPage) {
  const links = document.links || {};
  const total = document.meta && Number.isInteger(document.meta.count) ? document.meta.count : null;
  const pages = total === null ? null : Math.max(1, Math.ceil(total / PAGE_SIZE));
  // The buttons follow the API's own links (prev, next): the console builds no page URL itself.
  return h("nav", { class: "pagination", "aria-label": "Pages" },
    h("button", { type: "button", disabled: !links.prev, onclick: () => onPage(links.prev) }, "Previous page"),
    h("span", { "aria-live": "polite" }, pages ? `Page ${state.page} of ${pages} · ${total} key${total === 1 ? "" : "s"}` : `Page ${state.page}`),
    h("button", { type: "button", disabled: !links.next, onclick: () => onPage(links.next) }, "Next page"));
}

async function renderList(container) {
  let state = readState();
  const results = h("div", { class: "results", "aria-live": "polite", "data-results": "" });
  let request = 0;
  const load = async (link = null) => {
    const number = ++request;
    writeState(state);
    results.setAttribute("aria-busy", "true");
    loading(results, "Loading keys…");
    try {
      const document = link ? await api.get(link) : await api.get("/api-keys", queryFor(state));
      if (number !== request) return; // a newer search has started
      const filtered = state.name || state.status || state.tag;
      if (!document.data.length) {
        empty(results, filtered ? "No key matches these filters." : "You have no API keys yet. Create one to get started.");
      } else {
        results.replaceChildren(
          h("ul", { class: "key-list" }, document.data.map(keyRow)),
          pagination(document, state, (next) => { state = { ...state, page: pageOf(next) }; load(next); }));
      }
    } catch (error) {
      if (number === request) results.replaceChildren(h("div", { class: "form-errors", role: "alert" }, h("p", null, describeError(error))));
    } finally {
      if (number === request) results.removeAttribute("aria-busy");
    }
  };
  container.append(h("section", { "data-view": "keys" },
    h("div", { class: "toolbar" }, h("h1", null, "API keys"), h("a", { class: "button-link", href: "#/keys/new" }, "Create a key")),
    filtersForm(state, (next) => { state = next; load(); }),
    results));
  await load();
}

async function renderCreate(container) {
  const body = h("div");
  container.append(h("section", { "data-view": "create-key" }, h("h1", null, "Create an API key"), body));
  loading(body, "Loading the scopes…");
  const catalog = await loadScopes();
  const submit = h("button", { type: "submit", class: "primary" }, "Create key");
  const form = h("form", { class: "card", "data-form": "create-key", novalidate: true },
    keyFields(catalog),
    h("div", { class: "actions" }, submit, h("a", { href: "#/keys" }, "Cancel")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    submit.disabled = true;
    try {
      const document = await api.post("/api-keys", { data: { type: "api-keys", attributes: readKeyFields(form) } });
      await showSecret(document.data.attributes.secret, { title: `Your new key “${document.data.attributes.name}”` });
      navigate(`/keys/${document.data.id}`, "Key created.");
    } catch (error) {
      showErrors(form, error);
    } finally {
      submit.disabled = false;
    }
  });
  body.replaceChildren(form);
}

route("/keys", renderList);
route("/keys/new", renderCreate);

// The fields of a key, shared by the creation form (#/keys/new) and the edit form on a key's page.
// Every field sits in an element with data-field="<attribute>", so showErrors() puts an API error
// whose pointer is /data/attributes/<attribute> right under it.

import { api, currentUser } from "./api.js";
import { h, uniqueId } from "./ui.js";

export const PERIODS = ["day", "month", "total"];

let scopeCatalog = null; // GET /v1/scopes, fetched once: the catalog is fixed for a deployment

/** Return the scopes GET /v1/scopes lists (the built-in ones, then the LLM gateway's models'),
 * as [{id, description, adminOnly}]; fetched once per page. */
export async function loadScopes() {
  if (!scopeCatalog) {
    const document = await api.get("/scopes");
    scopeCatalog = document.data.map((scope) => ({
      id: scope.id, description: scope.attributes.description, adminOnly: Boolean(scope.attributes["admin-only"]),
    }));
  }
  return scopeCatalog;
}

/** A labelled field: label, control, optional help (linked with aria-describedby). */
function field(name, label, control, help = null, { wide = false } = {}) {
  const id = control.id || uniqueId(`field-${name}`);
  control.id = id;
  const helpNode = help && h("p", { class: "help", id: `${id}-help` }, help);
  if (helpNode) control.setAttribute("aria-describedby", helpNode.id);
  return h("div", { class: wide ? "field wide" : "field", "data-field": name },
    h("label", { for: id }, label), control, helpNode);
}

/** A value of the API's datetime as a datetime-local input's value (the viewer's local time). */
function localInputValue(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 16);
}

function scopesField(catalog, selected) {
  const isAdmin = Boolean(currentUser() && currentUser().isAdmin);
  const known = new Set(catalog.map((scope) => scope.id));
  // Admin-only scopes are offered to admins, or shown when the key already has them.
  const offered = catalog.filter((scope) => !scope.adminOnly || isAdmin || selected.includes(scope.id));
  const others = selected.filter((scope) => !known.has(scope));
  const othersId = uniqueId("field-other-scopes");
  return h("fieldset", { class: "wide", "data-field": "scopes" },
    h("legend", null, "Scopes"),
    h("p", { class: "help" }, "What the key may do. A key with no scope can be verified but calls nothing."),
    h("ul", { class: "scope-list" }, offered.map((scope) => h("li", null,
      h("label", null,
        h("input", { type: "checkbox", name: "scopes", value: scope.id, checked: selected.includes(scope.id) }),
        h("span", null, h("code", null, scope.id), scope.adminOnly ? " (admins only)" : "",
          h("span", { class: "help" }, scope.description)))))),
    h("div", { class: "field" },
      h("label", { for: othersId }, "Other scopes"),
      h("input", { id: othersId, name: "other-scopes", type: "text", value: others.join(" "),
        placeholder: "llm:openai:* billing:read", autocomplete: "off", spellcheck: "false" }),
      h("p", { class: "help" }, "Your own scopes, separated by spaces; '*' is a wildcard segment.")));
}

function allowanceField(kind, label, value, help) {
  const limitId = uniqueId(`field-${kind}-limit`);
  const periodId = uniqueId(`field-${kind}-period`);
  return h("fieldset", { "data-field": kind },
    h("legend", null, label),
    h("p", { class: "help" }, help),
    h("div", { class: "inline-form" },
      h("div", { class: "field" },
        h("label", { for: limitId }, "Limit"),
        h("input", { id: limitId, name: `${kind}-limit`, type: "number", min: "1", step: "1", inputmode: "numeric",
          value: value ? String(value.limit) : "", placeholder: "none" })),
      h("div", { class: "field" },
        h("label", { for: periodId }, "Per"),
        h("select", { id: periodId, name: `${kind}-period` },
          PERIODS.map((period) => h("option", { value: period, selected: value && value.period === period }, period))))));
}

/** The key's fields, filled from `key` (its attributes) or empty for a new key. */
export function keyFields(catalog, attributes = {}) {
  return h("div", { class: "form-grid" },
    field("name", "Name", h("input", { name: "name", type: "text", required: true, maxlength: "100",
      value: attributes.name || "", autocomplete: "off" }), "For you: where the key is used, e.g. 'CI deploys'."),
    field("tags", "Tags", h("input", { name: "tags", type: "text", value: (attributes.tags || []).join(", "),
      autocomplete: "off", spellcheck: "false" }), "Separated by commas: lower-case letters, digits, _ . : -"),
    field("description", "Description", h("textarea", { name: "description", maxlength: "1000" },
      attributes.description || ""), null, { wide: true }),
    scopesField(catalog, attributes.scopes || []),
    field("expires-at", "Expires", h("input", { name: "expires-at", type: "datetime-local",
      value: localInputValue(attributes["expires-at"]) }), "In your time zone. Leave empty for a key that never expires."),
    field("rate-limit", "Rate limit", h("input", { name: "rate-limit", type: "text", value: attributes["rate-limit"] || "",
      placeholder: "100/minute;10000/day", autocomplete: "off", spellcheck: "false" }),
    "Requests per window, e.g. 100/minute;10000/day. Empty: the service's defaults."),
    field("allowed-ips", "Allowed IP addresses", h("textarea", { name: "allowed-ips", spellcheck: "false" },
      (attributes["allowed-ips"] || []).join("\n")), "One address or CIDR network per line. Empty: any address.", { wide: true }),
    allowanceField("quota", "Quota", attributes.quota, "Requests allowed per period. Empty: no quota."),
    allowanceField("budget", "Budget", attributes.budget, "Cost units allowed per period. Empty: no budget."));
}

function words(text, separator) {
  return text.split(separator).map((word) => word.trim()).filter(Boolean);
}

/** A number the person typed, or the text itself when it is not one: the API then says why. */
function numberOrText(text) {
  const number = Number(text);
  return text.trim() !== "" && Number.isFinite(number) ? number : text;
}

function allowanceOf(form, kind) {
  const limit = form.elements[`${kind}-limit`].value.trim();
  return limit === "" ? null : { limit: numberOrText(limit), period: form.elements[`${kind}-period`].value };
}

/** The attributes of the key as the form has them, as the API takes them. */
export function readKeyFields(form) {
  const elements = form.elements;
  const expires = elements["expires-at"].value;
  const checked = [...form.querySelectorAll("input[name=scopes]:checked")].map((box) => box.value);
  return {
    name: elements.name.value,
    description: elements.description.value.trim() || null,
    scopes: [...new Set([...checked, ...words(elements["other-scopes"].value, /[\s,]+/)])],
    tags: words(elements.tags.value, ","),
    // datetime-local is the viewer's local time; the API takes an instant (UTC).
    "expires-at": expires ? new Date(expires).toISOString() : null,
    "allowed-ips": words(elements["allowed-ips"].value, /[\s,]+/),
    "rate-limit": elements["rate-limit"].value.trim() || null,
    quota: allowanceOf(form, "quota"),
    budget: allowanceOf(form, "budget"),
  };
}

// One key (#/keys/<id>): what it is and how much it has left, its lifecycle actions (suspend,
// reactivate, rotate, revoke, delete), the edit form, and its usage chart.

import { api, currentUser } from "./api.js";
import { keyFields, loadScopes, readKeyFields } from "./key-form.js";
import { keyHint, statusBadge } from "./keys.js";
import { navigate, route } from "./router.js";
import { clearErrors, confirmAction, describeError, h, loading, notify, showErrors, showSecret, timeElement, uniqueId } from "./ui.js";
import { usageSection } from "./usage-chart.js";

// Grace periods offered on rotation: how long the old secret keeps working (API maximum: 7 days).
const GRACE_PERIODS = [
  [0, "None: the old secret stops now"],
  [3600, "1 hour"],
  [86400, "1 day"],
  [7 * 86400, "7 days"],
];

const keyPath = (id) => `/api-keys/${encodeURIComponent(id)}`;

function fact(label, value) {
  return h("div", null, h("dt", null, label), h("dd", null, value));
}

function allowanceText(allowance, unit) {
  if (!allowance) return "None";
  const resets = allowance.period === "total" ? "" : `, resets ${new Date(allowance["resets-at"]).toLocaleString()}`;
  return `${allowance.remaining} of ${allowance.limit} ${unit} left (per ${allowance.period}${resets})`;
}

function facts(a) {
  return h("dl", { class: "facts" },
    fact("Status", statusBadge(a.status)),
    fact("Key", keyHint(a)),
    fact("Last used", timeElement(a["last-used-at"])),
    fact("Created", timeElement(a["created-at"])),
    fact("Expires", a["expires-at"] ? timeElement(a["expires-at"]) : "Never"),
    a["rotation-grace-until"] && fact("Previous secret valid until", h("span", { "data-grace": "" }, timeElement(a["rotation-grace-until"]))),
    a["suspended-at"] && fact("Suspended", timeElement(a["suspended-at"])),
    a["revoked-at"] && fact("Revoked", timeElement(a["revoked-at"])),
    fact("Scopes", a.scopes.length ? a.scopes.map((scope) => [h("code", null, scope), " "]) : "None"),
    fact("Tags", a.tags.length ? a.tags.map((tag) => h("span", { class: "tag" }, tag)) : "None"),
    fact("Allowed IP addresses", a["allowed-ips"] && a["allowed-ips"].length ? a["allowed-ips"].join(", ") : "Any"),
    fact("Rate limit", a["rate-limit"] || "The service's defaults"),
    fact("Quota", h("span", { "data-quota": "" }, allowanceText(a.quota, "requests"))),
    fact("Budget", h("span", { "data-budget": "" }, allowanceText(a.budget, "cost units"))),
    a.description && fact("Description", a.description));
}

/** Run a key action; on success redraw the page with `message`, on failure say why. */
async function act(redraw, message, action) {
  try {
    await action();
    await redraw();
    notify(message);
  } catch (error) {
    notify(describeError(error), "error");
  }
}

function rotateForm(key, redraw) {
  const selectId = uniqueId("grace");
  const form = h("form", { class: "inline-form", "data-form": "rotate" },
    h("div", { class: "field", "data-field": "grace-period" },
      h("label", { for: selectId }, "Keep the old secret working for"),
      h("select", { id: selectId, name: "grace-period" }, GRACE_PERIODS.map(([seconds, label]) => h("option", { value: seconds }, label)))),
    h("button", { type: "submit" }, "Rotate secret"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const grace = Number(form.elements["grace-period"].value);
    const warning = grace
      ? "A new secret is made now; the current one keeps working until the grace period ends."
      : "A new secret is made now and the current one stops working at once.";
    if (!(await confirmAction(warning, { title: "Rotate this key's secret?", confirmLabel: "Rotate", danger: !grace }))) return;
    try {
      const document = await api.post(`${keyPath(key.id)}/rotate`, { data: { type: "api-keys", attributes: { "grace-period": grace } } });
      const until = document.data.attributes["rotation-grace-until"];
      await showSecret(document.data.attributes.secret, {
        title: "Your key's new secret",
        note: until ? `The previous secret keeps working until ${new Date(until).toLocaleString()}.` : "The previous secret no longer works.",
      });
      await redraw();
      notify("The secret was rotated.");
    } catch (error) {
      showErrors(form, error);
    }
  });
  return form;
}

function actions(key, redraw) {
  const a = key.attributes;
  const id = key.id;
  const buttons = [];
  if (a.status === "active") {
    buttons.push(h("button", { type: "button", "data-action": "suspend", onclick: () => act(redraw, "The key is suspended.",
      () => api.post(`${keyPath(id)}/suspend`)) }, "Suspend"));
  }
  if (a.status === "suspended") {
    buttons.push(h("button", { type: "button", "data-action": "reactivate", onclick: () => act(redraw, "The key is active again.",
      () => api.post(`${keyPath(id)}/reactivate`)) }, "Reactivate"));
  }
  if (a.status !== "revoked") {
    buttons.push(h("button", { type: "button", class: "danger", "data-action": "revoke", onclick: async () => {
      if (await confirmAction(`Revoke “${a.name}”? Every request with it will be refused, for good: a revoked key cannot be reactivated.`,
        { title: "Revoke this key?", confirmLabel: "Revoke" })) {
        act(redraw, "The key is revoked.", () => api.post(`${keyPath(id)}/revoke`));
      }
    } }, "Revoke"));
  }
  buttons.push(h("button", { type: "button", class: "danger", "data-action": "delete", onclick: async () => {
    if (!(await confirmAction(`Delete “${a.name}”? It stops working and disappears from your list; its audit trail remains.`,
      { title: "Delete this key?", confirmLabel: "Delete" }))) return;
    try {
      await api.del(keyPath(id));
      navigate("/keys", `The key “${a.name}” was deleted.`);
    } catch (error) {
      notify(describeError(error), "error");
    }
  } }, "Delete"));
  return h("section", { class: "card", "aria-labelledby": "actions-heading" },
    h("h2", { id: "actions-heading" }, "Actions"),
    h("div", { class: "actions" }, buttons),
    a.status !== "revoked" && h("div", { class: "rotate" }, rotateForm(key, redraw)));
}

function editForm(key, catalog, redraw) {
  const submit = h("button", { type: "submit", class: "primary" }, "Save changes");
  const form = h("form", { "data-form": "edit-key", novalidate: true },
    keyFields(catalog, key.attributes),
    h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    submit.disabled = true;
    try {
      await api.patch(keyPath(key.id), { data: { type: "api-keys", id: key.id, attributes: readKeyFields(form) } });
      await redraw();
      notify("Changes saved.");
    } catch (error) {
      showErrors(form, error);
    } finally {
      submit.disabled = false;
    }
  });
  return h("section", { class: "card", "aria-labelledby": "edit-heading" },
    h("h2", { id: "edit-heading" }, "Edit"), form);
}

async function renderDetail(container, { id }) {
  loading(container, "Loading the key…");
  const [document, catalog] = await Promise.all([api.get(keyPath(id)), loadScopes()]);
  const key = document.data;
  // Redraw in place after a change: the key's new state, the same page (and the same usage).
  let usage = null;
  const redraw = async () => {
    const fresh = (await api.get(keyPath(id))).data;
    draw(fresh);
    const heading = container.querySelector("h1");
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  };
  const draw = (current) => {
    usage = usage || usageSection(id);
    const owner = current.relationships && current.relationships.user && current.relationships.user.data;
    const mine = !owner || owner.id === currentUser().id;
    container.replaceChildren(h("section", { "data-view": "key-detail", "data-key-id": current.id },
      h("p", null, h("a", { href: "#/keys" }, "← All keys")),
      h("h1", null, current.attributes.name),
      !mine && h("p", { class: "hint" }, `This key belongs to user ${owner.id}.`),
      h("div", { class: "detail-grid" },
        h("section", { class: "card", "aria-label": "Details" }, facts(current.attributes)),
        actions(current, redraw),
        usage,
        current.attributes.status !== "revoked" && editForm(current, catalog, redraw))));
  };
  draw(key);
}

route("/keys/:id", renderDetail);

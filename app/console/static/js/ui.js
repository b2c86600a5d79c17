// Small DOM helpers shared by every view. Data from the API only ever becomes text nodes and
// attribute values (never innerHTML), so a key named "<img onerror=...>" stays a name.

import { ApiError } from "./api.js";

const PROPERTIES = new Set(["value", "checked", "disabled", "selected", "hidden", "open", "readOnly", "required", "multiple", "indeterminate"]);

/** Build an element: h("button", {type: "button", class: "primary", onclick: fn}, "Save").
 * Attributes named on<event> with a function become listeners (no inline handler attributes: the
 * CSP forbids them); value/checked/disabled... are set as properties; null/false attributes and
 * children are skipped; arrays of children are flattened. */
export function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (PROPERTIES.has(name)) {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

let idCounter = 0;
/** Return an id unique in the page, for label/aria references. */
export function uniqueId(prefix = "lk") {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** Say what went wrong, in words: each error's title and detail; on 429, when to retry. */
export function describeError(error) {
  if (!(error instanceof ApiError)) return `Something went wrong: ${error && error.message ? error.message : error}`;
  return error.errors.map((item) => describeItem(error, item)).join(" ");
}

function describeItem(error, item) {
  const words = [item.title, item.detail].filter(Boolean);
  let text = words.length === 2 && words[0] !== words[1] ? `${words[0]}: ${words[1]}` : words[0] || "Error";
  if (error.status === 429) {
    text += error.retryAfter ? ` Try again in ${plural(error.retryAfter, "second")}.` : " Try again in a moment.";
  }
  return text;
}

function plural(count, unit) {
  return `${count} ${unit}${count === 1 ? "" : "s"}`;
}

/** The attribute a JSON:API error points at ("/data/attributes/rate-limit/0" -> "rate-limit"). */
function attributeOf(item) {
  const pointer = item.source && item.source.pointer;
  const match = typeof pointer === "string" && pointer.match(/^\/data\/attributes\/([^/]+)/);
  return match ? match[1] : null;
}

/** Remove the errors showErrors put in `form`. */
export function clearErrors(form) {
  form.querySelectorAll(".field-error, .form-errors").forEach((node) => node.remove());
  form.querySelectorAll("[aria-invalid]").forEach((node) => {
    node.removeAttribute("aria-invalid");
    const described = (node.getAttribute("aria-describedby") || "").split(" ").filter((id) => !id.startsWith("err-"));
    if (described.length) node.setAttribute("aria-describedby", described.join(" "));
    else node.removeAttribute("aria-describedby");
  });
}

/** Show `error` in `form`: each error next to the field its source.pointer names (the element with
 * data-field="<name>", or the control named <name>), the others in a box at the top of the form.
 * Focuses the first field in error (or the box) so keyboard and screen reader users land on it. */
export function showErrors(form, error) {
  clearErrors(form);
  const items = error instanceof ApiError ? error.errors : [{ title: "Error", detail: describeError(error) }];
  const general = [];
  let first = null;
  for (const item of items) {
    const name = attributeOf(item);
    const field = name && fieldOf(form, name);
    if (!field) {
      general.push(describeItem(error, item));
      continue;
    }
    const message = h("p", { class: "field-error", id: uniqueId("err") }, describeItem(error, item));
    field.append(message);
    for (const control of field.querySelectorAll("input, select, textarea")) {
      control.setAttribute("aria-invalid", "true");
      const described = control.getAttribute("aria-describedby");
      control.setAttribute("aria-describedby", described ? `${described} ${message.id}` : message.id);
    }
    first = first || field.querySelector("input, select, textarea");
  }
  if (general.length) {
    const box = h("div", { class: "form-errors", role: "alert", tabindex: "-1" },
      general.length === 1 ? h("p", null, general[0]) : h("ul", null, general.map((text) => h("li", null, text))));
    form.prepend(box);
    first = first || box;
  }
  if (first) first.focus();
}

function fieldOf(form, name) {
  const wrapper = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
  if (wrapper) return wrapper;
  const control = form.elements.namedItem(name);
  const element = control instanceof RadioNodeList ? control[0] : control;
  return element ? element.closest(".field") || element.parentElement : null;
}

const DATE_FORMAT = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** A date-time of the API (ISO 8601, UTC) in the viewer's time zone and locale; "—" for none. */
export function formatDate(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : DATE_FORMAT.format(date);
}

/** A <time> element showing formatDate(iso), with the exact instant in its datetime attribute. */
export function timeElement(iso) {
  return iso ? h("time", { datetime: iso, title: iso }, formatDate(iso)) : "—";
}

/** Open a modal dialog; resolve with the value of the button that closed it ("" for Escape). */
function openDialog(dialog, initialFocus) {
  const opener = document.activeElement;
  document.body.append(dialog);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener && opener.isConnected) opener.focus();
      resolve(dialog.returnValue);
    }, { once: true });
    dialog.showModal();
    if (initialFocus) initialFocus.focus();
  });
}

/** Ask for confirmation in an accessible modal <dialog>; resolve true when confirmed. Cancel has the
 * focus at first, so Enter alone never confirms a destructive action. */
export async function confirmAction(message, { title = "Are you sure?", confirmLabel = "Confirm", danger = true } = {}) {
  const titleId = uniqueId("dialog-title");
  const messageId = uniqueId("dialog-message");
  const cancel = h("button", { type: "submit", value: "cancel" }, "Cancel");
  const dialog = h("dialog", { class: "dialog", "aria-labelledby": titleId, "aria-describedby": messageId, "data-dialog": "confirm" },
    h("form", { method: "dialog" },
      h("h2", { id: titleId }, title),
      h("p", { id: messageId }, message),
      h("div", { class: "actions" },
        cancel,
        h("button", { type: "submit", value: "confirm", class: danger ? "danger" : "primary" }, confirmLabel))));
  return (await openDialog(dialog, cancel)) === "confirm";
}

/** Show a new key's secret once, in a modal <dialog> with a copy button; resolve when closed. */
export function showSecret(secret, { title = "Your new API key", note = null } = {}) {
  const titleId = uniqueId("dialog-title");
  const warningId = uniqueId("dialog-warning");
  // A read-only textarea, not an input: the whole secret stays visible at 375 px (it wraps).
  const field = h("textarea", { readOnly: true, rows: "2", class: "secret", "data-secret": "",
    "aria-label": "API key secret", "aria-describedby": warningId, spellcheck: "false", autocomplete: "off" }, secret);
  const status = h("p", { class: "copy-status", role: "status", "aria-live": "polite" });
  const copy = h("button", { type: "button", class: "primary", onclick: () => copySecret(field, status) }, "Copy");
  const dialog = h("dialog", { class: "dialog secret-dialog", "aria-labelledby": titleId, "aria-describedby": warningId, "data-dialog": "secret" },
    h("form", { method: "dialog" },
      h("h2", { id: titleId }, title),
      h("p", { id: warningId, class: "warning" },
        h("strong", null, "You will not see this secret again."),
        " Copy it now and store it somewhere safe, such as a secret manager. Latchkey keeps only a digest of it."),
      note && h("p", null, note),
      h("div", { class: "secret-row" }, field, copy),
      status,
      h("div", { class: "actions" }, h("button", { type: "submit", value: "done" }, "I have stored it"))));
  return openDialog(dialog, copy);
}

async function copySecret(field, status) {
  try {
    await navigator.clipboard.writeText(field.value);
    status.textContent = "Copied to the clipboard.";
  } catch {
    // No clipboard access (an insecure origin, a denied permission): select the text for the
    // person to copy with the keyboard.
    field.focus();
    field.select();
    status.textContent = "Selected: press Ctrl+C (⌘C on a Mac) to copy.";
  }
}

/** Replace the contents of `container` with a loading state. */
export function loading(container, text = "Loading…") {
  container.replaceChildren(h("p", { class: "loading", role: "status" }, text));
}

/** Replace the contents of `container` with an empty state saying `text`. */
export function empty(container, text) {
  container.replaceChildren(h("p", { class: "empty" }, text));
}

/** Announce `text` in the page's live region (success of an action, a failure outside a form). */
export function notify(text, kind = "info") {
  const region = document.getElementById("messages");
  if (!region) return;
  const message = h("p", { class: `message ${kind}` }, text,
    h("button", { type: "button", class: "link", "aria-label": "Dismiss message", onclick: () => message.remove() }, "×"));
  region.replaceChildren(message);
}

/** Clear the live region (on navigation: a message belongs to the view it was shown in). */
export function clearNotice() {
  const region = document.getElementById("messages");
  if (region) region.replaceChildren();
}

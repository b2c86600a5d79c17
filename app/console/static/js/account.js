// The account page (#/account): what the account's keys did (GET /v1/usage: totals, outcomes,
// busiest keys, the LLM gateway's calls by model), changing the email or the password
// (PATCH /v1/users/<id> with current-password, which the API demands for one's own account), and
// deleting the account.

import { ApiError, api, currentUser, logout, updateCurrentUser } from "./api.js";
import { hashQuery, navigate, route } from "./router.js";
import { clearErrors, confirmAction, empty, h, loading, notify, showErrors } from "./ui.js";
import { modelTable } from "./usage-chart.js";

// The windows the summary offers, in days. Beyond 31 days the API counts by day (group-by=day).
const WINDOWS = [1, 7, 30, 90];
const DEFAULT_WINDOW = 30;

// Outcomes of a request or a verification, in words; an outcome missing here is shown by its code.
const OUTCOMES = {
  VALID: "Served",
  RATE_LIMITED: "Rate limited",
  QUOTA_EXCEEDED: "Over quota",
  BUDGET_EXCEEDED: "Over budget",
  INSUFFICIENT_SCOPES: "Missing scope",
  FORBIDDEN: "Address not allowed",
  EXPIRED: "Expired key",
  REVOKED: "Revoked key",
  SUSPENDED: "Suspended key",
};

function number(value) {
  return Number(value || 0).toLocaleString();
}

function figure(label, value, name) {
  return h("div", { class: "figure", "data-figure": name }, h("dt", null, label), h("dd", null, number(value)));
}

/** The LLM gateway's calls by model, in the same table as a key's usage; null when there were none. */
function modelSection(models) {
  const table = modelTable(models, { hiddenCaption: true });
  return table && h("div", { class: "summary-models", "data-summary": "by-model" }, h("h3", null, "By model"), table);
}

/** Draw the summary document of GET /v1/usage into `box`. */
function drawSummary(box, summary) {
  const a = summary.attributes;
  if (!a.total) {
    empty(box, "No request was made with your keys in this period.");
    return;
  }
  const outcomes = Object.entries(a["by-outcome"] || {}).sort((x, y) => y[1] - x[1]);
  box.replaceChildren(...[
    h("dl", { class: "figures" },
      figure("Requests", a.total, "total"),
      figure("Errors", a.errors, "errors"),
      figure("Rate-limited", a["rate-limited"], "rate-limited"),
      figure("Cost", a.cost, "cost")),
    h("div", { class: "summary-columns" },
      h("div", null,
        h("h3", null, "By outcome"),
        h("table", { class: "compact" },
          h("thead", null, h("tr", null, h("th", { scope: "col" }, "Outcome"), h("th", { scope: "col", class: "number" }, "Requests"))),
          h("tbody", null, outcomes.map(([outcome, count]) => h("tr", null,
            h("th", { scope: "row" }, OUTCOMES[outcome] || outcome, " ", h("code", null, outcome)),
            h("td", { class: "number" }, number(count))))))),
      h("div", null,
        h("h3", null, "Busiest keys"),
        h("ol", { class: "busiest-keys" }, (a["busiest-keys"] || []).map((key) => h("li", null,
          h("a", { href: `#/keys/${encodeURIComponent(key.id)}` }, key.name), " ",
          h("span", { class: "hint" }, `${number(key.total)} request${key.total === 1 ? "" : "s"}`)))))),
    modelSection(a["by-model"]),
  ].filter(Boolean));
}

async function loadSummary(box, form, days) {
  loading(box, "Loading usage…");
  clearErrors(form);
  const to = new Date();
  const from = new Date(to.getTime() - days * 86400000);
  try {
    const document = await api.get("/usage", {
      "filter[from]": from.toISOString(), "filter[to]": to.toISOString(), "group-by": days > 31 ? "day" : "hour",
    });
    drawSummary(box, document.data);
  } catch (error) {
    box.replaceChildren();
    showErrors(form, error);
  }
}

function usageSection() {
  const days = WINDOWS.includes(Number(hashQuery().get("days"))) ? Number(hashQuery().get("days")) : DEFAULT_WINDOW;
  const select = h("select", { id: "usage-window", name: "days" },
    WINDOWS.map((n) => h("option", { value: String(n) }, n === 1 ? "Last 24 hours" : `Last ${n} days`)));
  select.value = String(days);
  const form = h("form", { class: "inline-form", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "usage-window" }, "Period"), select));
  const box = h("div", { class: "usage-summary", "aria-live": "polite" });
  // The period is kept in the hash, so a reload shows the same one.
  select.addEventListener("change", () => {
    history.replaceState(null, "", `#/account?days=${select.value}`);
    loadSummary(box, form, Number(select.value));
  });
  form.addEventListener("submit", (event) => event.preventDefault());
  const section = h("section", { class: "card", "aria-labelledby": "usage-heading", "data-section": "usage" },
    h("h2", { id: "usage-heading" }, "Usage"),
    currentUser().isAdmin ? h("p", { class: "hint" }, "As an administrator, these figures count every account's keys.") : null,
    form, box);
  return { section, load: () => loadSummary(box, form, days) };
}

// --- Changing the email and the password --------------------------------------------------------

/** A labelled input of form `formName`; `name` is also the attribute its API errors point at. */
function field(formName, name, label, attrs, help = null) {
  const id = `account-${formName}-${name}`;
  const helpId = help ? `${id}-help` : null;
  return h("div", { class: "field", "data-field": name },
    h("label", { for: id }, label),
    h("input", { id, name, required: true, "aria-describedby": helpId, ...attrs }),
    help ? h("p", { class: "help", id: helpId }, help) : null);
}

/** An error found before sending, in the API's shape, so showErrors puts it next to its field. */
function fieldError(name, title, detail) {
  return new ApiError(422, [{ status: "422", title, detail, source: { pointer: `/data/attributes/${name}` } }]);
}

/** PATCH the account with `attributes` (and the current password). */
function patchAccount(attributes) {
  const id = currentUser().id;
  return api.patch(`/users/${encodeURIComponent(id)}`, { data: { type: "users", id, attributes } });
}

function accountForm(name, heading, fields, submitLabel, onSubmit) {
  const headingId = `account-${name}-heading`;
  const form = h("form", { class: "card narrow", "data-form": `account-${name}`, "aria-labelledby": headingId, novalidate: true },
    h("h2", { id: headingId }, heading), fields,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, submitLabel)));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    clearErrors(form);
    try {
      await onSubmit(form);
    } catch (error) {
      showErrors(form, error);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

function emailForm() {
  return accountForm("email", "Email", [
    field("email", "email", "New email", { type: "email", autocomplete: "email", value: currentUser().email }),
    field("email", "current-password", "Current password", { type: "password", autocomplete: "current-password" },
      "Needed to change your email."),
  ], "Change email", async (form) => {
    const email = form.elements.email.value.trim();
    await patchAccount({ email, "current-password": form.elements["current-password"].value });
    updateCurrentUser({ email: email.toLowerCase() });
    form.elements["current-password"].value = "";
    notify(`Your email is now ${email.toLowerCase()}.`);
  });
}

function passwordForm() {
  return accountForm("password", "Password", [
    field("password", "current-password", "Current password", { type: "password", autocomplete: "current-password" }),
    field("password", "password", "New password", { type: "password", autocomplete: "new-password" },
      "A long passphrase is best. Your other sessions end when it changes."),
    field("password", "password-repeat", "Repeat the new password", { type: "password", autocomplete: "new-password" }),
  ], "Change password", async (form) => {
    const { password } = form.elements;
    if (password.value !== form.elements["password-repeat"].value) {
      throw fieldError("password-repeat", "Passwords differ", "Type the same new password twice.");
    }
    await patchAccount({ password: password.value, "current-password": form.elements["current-password"].value });
    form.reset();
    notify("Your password is changed. Every other session of your account has ended.");
  });
}

// --- Deleting the account ---------------------------------------------------------------------------

function deleteSection() {
  const form = h("form", { class: "card danger-zone", "data-form": "account-delete", "aria-labelledby": "account-delete-heading", novalidate: true },
    h("h2", { id: "account-delete-heading" }, "Delete the account"),
    h("p", null, "Deleting the account deletes every one of its keys: services using them are refused at once. This cannot be undone."),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "danger" }, "Delete account…")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const confirmed = await confirmAction(
      `The account ${currentUser().email} and all its keys will be deleted for good.`,
      { title: "Delete your account?", confirmLabel: "Delete my account" });
    if (!confirmed) return;
    try {
      await api.del(`/users/${encodeURIComponent(currentUser().id)}`);
    } catch (error) {
      showErrors(form, error);
      return;
    }
    // The session went with the account; the console goes to the login form when it forgets the
    // tokens. Say why there once that navigation is done (a notice shown earlier would be cleared).
    const leftAccount = new Promise((resolve) => window.addEventListener("hashchange", resolve, { once: true }));
    await logout().catch(() => {});
    await leftAccount;
    navigate("/login", "Your account has been deleted.");
  });
  return form;
}

async function renderAccount(container) {
  const user = currentUser();
  const usage = usageSection();
  container.append(h("section", { "data-view": "account" },
    h("h1", null, "Your account"),
    h("p", { class: "hint" }, "Signed in as ", h("strong", null, user.email), `, account #${user.id}`,
      user.isAdmin ? ", an administrator." : "."),
    usage.section,
    h("div", { class: "account-forms" }, emailForm(), passwordForm()),
    deleteSection()));
  await usage.load();
}

route("/account", renderAccount, { title: "Your account" });

// Log in and sign up. Both forms post to the public API (POST /v1/auth/login with a plain JSON
// body; POST /v1/users with a `users` document) and show its errors next to the fields.

import { currentUser, login, signUp } from "./api.js";
import { hashQuery, navigate, route } from "./router.js";
import { clearErrors, h, showErrors } from "./ui.js";

/** The view to go to after logging in: ?next= when it is a console path, else the key list. */
function nextPath() {
  const next = hashQuery().get("next") || "";
  return /^\/[\w\-/]*$/.test(next) && !next.startsWith("/login") && !next.startsWith("/signup") ? next : "/keys";
}

function credentialFields(passwordAutocomplete) {
  return [
    h("div", { class: "field", "data-field": "email" },
      h("label", { for: "session-email" }, "Email"),
      h("input", { id: "session-email", name: "email", type: "email", autocomplete: "username", required: true })),
    h("div", { class: "field", "data-field": "password" },
      h("label", { for: "session-password" }, "Password"),
      h("input", { id: "session-password", name: "password", type: "password", autocomplete: passwordAutocomplete, required: true })),
  ];
}

/** Disable the form's submit button while `action` runs; show its error in the form. */
async function submitting(form, action) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  clearErrors(form);
  try {
    await action();
  } catch (error) {
    showErrors(form, error);
  } finally {
    button.disabled = false;
  }
}

function renderLogin(container) {
  if (currentUser()) return navigate("/keys");
  const form = h("form", { class: "card narrow", "data-form": "login", novalidate: true },
    credentialFields("current-password"),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Log in")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, async () => {
      await login(form.elements.email.value, form.elements.password.value);
      navigate(nextPath());
    });
  });
  container.append(
    h("h1", null, "Log in"),
    h("p", { class: "hint" }, "Your session lasts while this tab is open: reloading the page means logging in again."),
    form,
    h("p", null, "No account yet? ", h("a", { href: "#/signup" }, "Sign up")));
}

function renderSignUp(container) {
  if (currentUser()) return navigate("/keys");
  const form = h("form", { class: "card narrow", "data-form": "signup", novalidate: true },
    credentialFields("new-password"),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Sign up")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, async () => {
      await signUp(form.elements.email.value, form.elements.password.value);
      navigate("/keys", "Welcome to Latchkey. Create your first API key.");
    });
  });
  container.append(
    h("h1", null, "Sign up"),
    form,
    h("p", null, "Already have an account? ", h("a", { href: "#/login" }, "Log in")));
}

route("/login", renderLogin, { public: true });
route("/signup", renderSignUp, { public: true });

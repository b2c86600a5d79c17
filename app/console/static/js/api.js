// The console's only door to Latchkey: the public JSON:API under /v1, on this origin, with the
// same documents any other frontend sends. Nothing here is private to the console.
//
// Tokens: the access and refresh tokens live in this module's variables and nowhere else: never in
// localStorage, sessionStorage or a cookie. A script that got into the page later could not read
// them from storage, and nothing outlives the tab. The price, chosen knowingly: a reload or a new
// tab means logging in again. When the API answers 401 because the access token has expired, the
// console refreshes it once, explicitly, with the refresh token (POST /v1/auth/refresh) and retries
// the request; if that fails too, the session is over and the person logs in again.

const JSONAPI = "application/vnd.api+json";
const EXPIRY_SKEW_SECONDS = 5; // a token this close to its expiry is treated as expired

let accessToken = null;
let refreshToken = null;
let user = null; // {id, email, isAdmin} of the logged-in account
let refreshing = null; // the refresh in flight, shared by every request that needs it
const sessionListeners = new Set();

/** An answer that is not 2xx: its status, its JSON:API error objects, and Retry-After on 429. */
export class ApiError extends Error {
  constructor(status, errors, retryAfter = null) {
    const first = errors[0] || {};
    super(first.detail || first.title || `The request failed (${status}).`);
    this.name = "ApiError";
    this.status = status;
    this.errors = errors;
    this.retryAfter = retryAfter; // seconds, or null
  }
}

/** Resolve `path` against this origin: "/api-keys" means /v1/api-keys; "/v1/..." and the absolute
 * links the API returns (pagination, related) are taken as they are, on this origin only. */
function urlFor(path, params) {
  const relative = path.startsWith("/") && !path.startsWith("/v1/") ? `/v1${path}` : path;
  const url = new URL(relative, window.location.origin);
  if (url.origin !== window.location.origin) {
    throw new ApiError(0, [{ title: "Refused", detail: "The console only talks to its own origin." }]);
  }
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  return url;
}

/** Seconds since the epoch at which a JWT expires (its `exp` claim), or 0 when unreadable. The
 * console reads the claim only to decide whether to refresh; the API alone checks signatures. */
function expiresAt(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return Number(JSON.parse(atob(payload)).exp) || 0;
  } catch {
    return 0;
  }
}

function isExpired(token) {
  return expiresAt(token) <= Date.now() / 1000 + EXPIRY_SKEW_SECONDS;
}

async function send(method, url, { body, token, json = false } = {}) {
  const headers = { Accept: JSONAPI };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = json ? "application/json" : JSONAPI;
  let response;
  try {
    response = await fetch(url, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", // the console authenticates with its tokens, never with cookies
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, [{ title: "Network error", detail: "Latchkey could not be reached. Check your connection and retry." }]);
  }
  const text = response.status === 204 ? "" : await response.text();
  let document = null;
  try {
    document = text ? JSON.parse(text) : null;
  } catch {
    document = null;
  }
  if (!response.ok) {
    const errors = document && Array.isArray(document.errors) && document.errors.length
      ? document.errors
      : [{ status: String(response.status), title: response.statusText || "Error", detail: `The request failed (${response.status}).` }];
    const retryAfter = response.status === 429 || response.status === 503
      ? Number.parseInt(response.headers.get("Retry-After"), 10) || null
      : null;
    throw new ApiError(response.status, errors, retryAfter);
  }
  return document;
}

/** Send an authenticated request; on a 401 for an expired access token, refresh once and retry. */
async function request(method, path, params, body) {
  const url = urlFor(path, params);
  const token = accessToken;
  try {
    return await send(method, url, { body, token });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401 || !token) throw error;
    if (accessToken && accessToken !== token) { // another request refreshed it meanwhile
      return send(method, url, { body, token: accessToken });
    }
    if (!accessToken || !isExpired(token)) { // revoked, or ended elsewhere: the session is over
      endSession();
      throw error;
    }
    await refreshAccessToken(error);
    return send(method, url, { body, token: accessToken });
  }
}

/** Exchange the refresh token for a new access token (one exchange at a time); on failure, end the
 * session and throw `original` (the 401 that started it) so the caller shows why. */
async function refreshAccessToken(original) {
  if (!refreshing) {
    const token = refreshToken;
    refreshing = send("POST", urlFor("/auth/refresh"), { token })
      .then((document) => { accessToken = document.meta.access_token; })
      .finally(() => { refreshing = null; });
  }
  try {
    await refreshing;
  } catch {
    endSession();
    throw original;
  }
}

function endSession() {
  const hadSession = accessToken !== null;
  accessToken = refreshToken = user = null;
  if (hadSession) sessionListeners.forEach((listener) => listener(null));
}

export const api = {
  /** GET a document (`params`: query parameters, e.g. {"filter[name]": "ci"}). */
  get: (path, params) => request("GET", path, params),
  /** POST a document; returns the answer's document, or null for 204. */
  post: (path, body) => request("POST", path, undefined, body),
  /** PATCH a document; returns the answer's document. */
  patch: (path, body) => request("PATCH", path, undefined, body),
  /** DELETE; returns null (204) or the answer's document. */
  del: (path) => request("DELETE", path),
};

/** Log in; keep the tokens in memory and load the account. Throws ApiError (401 for a wrong email
 * or password, 429 when too many attempts were made). */
export async function login(email, password) {
  // A plain JSON body, as the API documents for login; the tokens come back in `meta`.
  const document = await send("POST", urlFor("/auth/login"), { body: { email, password }, json: true });
  accessToken = document.meta.access_token;
  refreshToken = document.meta.refresh_token;
  let account;
  try {
    account = await api.get(`/users/${encodeURIComponent(document.meta.user_id)}`);
  } catch (error) {
    accessToken = refreshToken = null; // not logged in after all; nobody was told otherwise
    throw error;
  }
  user = { id: account.data.id, email: account.data.attributes.email, isAdmin: Boolean(account.data.attributes["is-admin"]) };
  sessionListeners.forEach((listener) => listener(user));
  return user;
}

/** Create an account, then log in with it. Throws ApiError (422 with pointers to the fields). */
export async function signUp(email, password) {
  await send("POST", urlFor("/users"), { body: { data: { type: "users", attributes: { email, password } } } });
  return login(email, password);
}

/** End this session on the server (both tokens stop working), then forget the tokens. */
export async function logout() {
  try {
    if (accessToken) await request("POST", "/auth/logout");
  } finally {
    endSession();
  }
}

/** End every session of the account, this one included ("sign out everywhere"). */
export async function logoutAll() {
  await request("POST", "/auth/logout-all");
  endSession();
}

/** The logged-in account {id, email, isAdmin}, or null. */
export function currentUser() {
  return user;
}

/** Update the remembered account after the person changed it (e.g. a new email). */
export function updateCurrentUser(changes) {
  if (user) {
    user = { ...user, ...changes };
    sessionListeners.forEach((listener) => listener(user));
  }
}

/** Call `listener(user or null)` whenever someone logs in or the session ends. */
export function onSessionChange(listener) {
  sessionListeners.add(listener);
}

// devour-client (npm) against Latchkey: the same flow as kitsu.mjs. Devour is configured with the
// base URL, the bearer token and logger: false (it logs every failed request whole, besides
// rejecting with its errors); its models declare the attributes it is to send and read (devour
// drops the others, with a warning).
import JsonApi from "devour-client";

import { assert, flowArguments, step } from "./steps.mjs";

const {base, email, password} = flowArguments();
const api = new JsonApi({apiUrl: `${base}/v1`, logger: false});
api.define("user", {email: "", password: "", "is-admin": false, "api-keys": {jsonApi: "hasMany", type: "api-keys"}});
// Devour POSTs resources only (request() drops a body's members that no model declares): logging in
// is creating a "session" at /auth/login, whose attributes the server reads like a plain body.
api.define("session", {email: "", password: ""}, {collectionPath: "auth/login"});
api.define("api-key", {name: "", tags: [], status: "", secret: "", user: {jsonApi: "hasOne", type: "users"}});
const follow = (link) => api.request(new URL(link, base).href);

await step("sign-up", async () => {
  const {data} = await api.create("user", {email, password});
  assert.equal(data.email, email);
});
await step("login", async () => {
  const {meta} = await api.create("session", {email, password});
  api.bearer = meta.access_token;
});
await step("list keys (none yet)", async () => {
  const {data} = await api.findAll("api-key");
  assert.deepEqual(data, []);
});
const first = await step("create a key", async () => {
  const {data} = await api.create("api-key", {name: "first", tags: ["console"]});
  assert.match(data.secret, /^lk_/, "the one-time secret is in the answer");
  return data;
});
await step("create two more", async () => {
  for (const name of ["second", "third"]) {
    assert.equal((await api.create("api-key", {name})).data.name, name);
  }
});
await step("fetch it", async () => {
  const {data} = await api.find("api-key", first.id);
  assert.equal(data.name, "first");
  assert.equal(data.secret, undefined, "the secret is never shown again");
});
await step("update its name", async () => {
  const {data} = await api.update("api-key", {id: first.id, name: "renamed"});
  assert.equal(data.name, "renamed");
});
const page = await step("paginate", async () => {
  const response = await api.findAll("api-key", {page: {size: 2}});
  assert.equal(response.data.length, 2);
  assert.ok(response.links.next, "a next link");
  return response;
});
await step("follow the next link", async () => {
  const {data} = await follow(page.links.next);
  assert.deepEqual(data.map((key) => key.name), ["third"]);
});
await step("filter", async () => {
  const {data} = await api.findAll("api-key", {filter: {name: "renamed"}});
  assert.deepEqual(data.map((key) => key.id), [first.id]);
});
await step("sort", async () => {
  const {data} = await api.findAll("api-key", {sort: "-name"});
  assert.deepEqual(data.map((key) => key.name), ["third", "second", "renamed"]);
});
const included = await step("include the user", async () => {
  const {data} = await api.find("api-key", first.id, {include: "user"});
  assert.equal(data.user.email, email);
  return data;
});
await step("follow the key's self link", async () => {
  assert.equal((await follow(included.links.self)).data.id, first.id);
});
await step("revoke", async () => {
  const {data} = await api.request(`${base}/v1/api-keys/${first.id}/revoke`, "POST");
  assert.equal(data.status, "revoked");
});
await step("delete", async () => {
  await api.destroy("api-key", first.id);
  // Devour rejects with {index or pointer: {title, detail}}: the status and code are not kept.
  await assert.rejects(api.find("api-key", first.id), (errors) => /not found/i.test(errors[0].detail));
});

// kitsu (npm) against Latchkey: sign-up, login, then every key operation a console needs.
// Kitsu is configured with the base URL and the Authorization header only: its defaults camel-case
// the types it sends ("apiKeys"), which Latchkey reads as the type they name ("api-keys").
import Kitsu from "kitsu";

import { assert, flowArguments, step } from "./steps.mjs";

const {base, email, password} = flowArguments();
const api = new Kitsu({baseURL: `${base}/v1`});
const follow = (link) => api.axios.get(new URL(link, base).href, {headers: api.headers});

await step("sign-up", async () => {
  const {status, data} = await api.post("users", {email, password});
  assert.equal(status, 201);
  assert.equal(data.email, email);
});
await step("login", async () => {
  const {meta} = await api.request({method: "POST", url: "auth/login", type: "sessions", body: {email, password}});
  api.headers.Authorization = `Bearer ${meta.access_token}`;
});
await step("list keys (none yet)", async () => {
  const {data} = await api.get("api-keys");
  assert.deepEqual(data, []);
});
const first = await step("create a key", async () => {
  const {status, data, headers} = await api.post("api-keys", {name: "first", tags: ["console"]});
  assert.equal(status, 201);
  assert.match(data.secret, /^lk_/, "the one-time secret is in the answer");
  assert.ok(headers.location.endsWith(`/v1/api-keys/${data.id}`));
  return data;
});
await step("create two more", async () => {
  for (const name of ["second", "third"]) {
    assert.equal((await api.post("api-keys", {name})).status, 201);
  }
});
await step("fetch it", async () => {
  const {data} = await api.get(`api-keys/${first.id}`);
  assert.equal(data.name, "first");
  assert.equal(data.secret, undefined, "the secret is never shown again");
});
await step("update its name", async () => {
  const {data} = await api.patch("api-keys", {id: first.id, name: "renamed"});
  assert.equal(data.name, "renamed");
});
const page = await step("paginate", async () => {
  const response = await api.get("api-keys", {params: {page: {size: 2}}});
  assert.equal(response.data.length, 2);
  assert.ok(response.links.next, "a next link");
  return response;
});
await step("follow the next link", async () => {
  const {data} = await follow(page.links.next);
  assert.deepEqual(data.data.map((key) => key.attributes.name), ["third"]);
});
await step("filter", async () => {
  const {data} = await api.get("api-keys", {params: {filter: {name: "renamed"}}});
  assert.deepEqual(data.map((key) => key.id), [first.id]);
});
await step("sort", async () => {
  const {data} = await api.get("api-keys", {params: {sort: "-name"}});
  assert.deepEqual(data.map((key) => key.name), ["third", "second", "renamed"]);
});
const included = await step("include the user", async () => {
  const {data} = await api.get(`api-keys/${first.id}`, {params: {include: "user"}});
  assert.equal(data.user.data.email, email);
  return data;
});
await step("follow the key's self and user links", async () => {
  assert.equal((await follow(included.links.self)).data.data.id, first.id);
  const user = (await follow(included.user.links.related)).data.data;
  assert.equal(user.attributes.email, email);
});
await step("revoke", async () => {
  const {data} = await api.request({method: "POST", url: `api-keys/${first.id}/revoke`, type: "api-keys", body: {}});
  assert.equal(data.status, "revoked");
});
await step("delete", async () => {
  assert.ok([200, 204].includes((await api.delete("api-keys", first.id)).status));
  await assert.rejects(api.get(`api-keys/${first.id}`), (error) => error.response.status === 404);
});

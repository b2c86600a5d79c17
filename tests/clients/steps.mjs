// Shared by the client scripts: named steps that print `ok <name>` or `FAIL <name>: <why>` (with
// the server's error document when there is one) and stop the script with exit code 1.
import assert from "node:assert/strict";

export { assert };

export async function step(name, action) {
  try {
    const result = await action();
    console.log(`ok ${name}`);
    return result;
  } catch (error) {
    const answer = error.response ? ` (HTTP ${error.response.status}: ${JSON.stringify(error.response.data)})` : "";
    const why = error instanceof Error ? error.message : JSON.stringify(error);  // devour rejects with its errors
    console.log(`FAIL ${name}: ${why}${answer}`);
    process.exit(1);
  }
}

// The command line every script takes: node <script> <base URL> <email> <password>.
export function flowArguments() {
  const [base, email, password] = process.argv.slice(2);
  if (!password) {
    console.log("usage: node <script> <base URL of Latchkey> <new email> <password>");
    process.exit(2);
  }
  return {base, email, password};
}

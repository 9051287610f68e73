// The README's JavaScript snippet, run as it stands against a real
// `roomstore serve`: the test takes the fenced block that follows the
// marker comment in README.md, so the README cannot show client code that
// does not run. Builds nothing: ROOMSTORE_BIN names the binary (make
// test-node builds it). Every wait has a deadline.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CALL_TIMEOUT, cliToken, run, startServer } from "./harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const README = join(here, "../../../../README.md");
const MARKER = "<!-- snippet: meshagent-client (run by cmd/roomstore/testdata/meshagent/readme.test.mjs) -->";
// The server address the snippet names; the test puts the one its server
// listens on in its place.
const SNIPPET_ADDR = "127.0.0.1:8080";
const SNIPPET_TIMEOUT = 30_000;

// readmeSnippet returns the code of the fenced block right after MARKER,
// which must appear exactly once.
async function readmeSnippet(path = README) {
  const text = await readFile(path, "utf8");
  const parts = text.split(MARKER);
  assert.equal(parts.length, 2, `${path} marks exactly one snippet with ${MARKER}`);
  const m = /^\s*```(?:js|javascript)\n([\s\S]*?)\n```/.exec(parts[1]);
  assert.ok(m, `a \`\`\`js fenced block follows the marker in ${path}`);
  return m[1];
}

// runNode runs file with node and resolves with its exit code and output.
function runNode(file, env) {
  return new Promise((resolve) => {
    execFile(process.execPath, [file], { env: { ...process.env, ...env }, timeout: SNIPPET_TIMEOUT }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? err.signal ?? 1) : 0, stdout, stderr });
    });
  });
}

test("the README's MeshAgent client snippet runs against roomstore serve", async (t) => {
  const code = await readmeSnippet();
  assert.equal(code.split(SNIPPET_ADDR).length, 2, `the snippet names the server as ${SNIPPET_ADDR}, once`);

  const dir = await mkdtemp(join(tmpdir(), "roomstore-readme-"));
  let srv;
  t.after(async () => {
    try {
      if (srv) assert.equal(await srv.stop(), 0, "roomstore serve exits 0 after SIGTERM:\n" + srv.logs.slice(-20).join("\n"));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  await mkdir(join(dir, "rooms"));
  srv = await startServer(`file://${dir}/rooms/{room}`);

  // The snippet as a file of its own, in a folder that sees this
  // directory's node_modules (the installed @meshagent/meshagent).
  const appDir = join(dir, "client");
  await mkdir(appDir);
  await symlink(join(here, "node_modules"), join(appDir, "node_modules"), "dir");
  const file = join(appDir, "app.mjs");
  await writeFile(file, code.replace(SNIPPET_ADDR, srv.addr));

  // The token as the README makes it: roomstore token --name alice --room r1.
  const token = await cliToken("r1");
  const r = await runNode(file, { ROOMSTORE_TOKEN: token });
  assert.equal(r.code, 0, `the snippet exits 0:\n${r.stderr}`);
  assert.equal(r.stdout, "[ 'hello.txt' ]\n", "the snippet prints the room's listing");

  // The file is there for everyone else, read through the server.
  const got = await run(["--store", `ws://${srv.addr}/rooms/r1`, "--token", token, "--timeout", `${CALL_TIMEOUT / 1000}s`, "get", "hello.txt"]);
  assert.equal(got.code, 0, got.stderr);
  assert.equal(got.stdout, "hi");
});

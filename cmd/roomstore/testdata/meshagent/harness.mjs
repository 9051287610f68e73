// What the MeshAgent client tests share: the roomstore serve processes
// they start, tokens, the client's protocol with the harness fixes
// MESHAGENT-PROTOCOL.md describes, and bounded waits. Builds nothing:
// ROOMSTORE_BIN names the binary (make test-node builds it).
import { after, before } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

// 0.39.9's ESM build cannot be imported by name; its CommonJS build can.
export const require = createRequire(import.meta.url);
const { ApiScope, ParticipantToken, RoomClient, WebSocketClientProtocol } = require("@meshagent/meshagent");

export const BIN = process.env.ROOMSTORE_BIN;
if (!BIN) {
  throw new Error("set ROOMSTORE_BIN to the roomstore binary (make test-node builds it)");
}
export const SECRET = "node-test-secret-" + randomBytes(16).toString("hex");
export const START_TIMEOUT = 20_000; // a server's "listening" line
export const CALL_TIMEOUT = 15_000; // one client call
export const EVENT_TIMEOUT = 10_000; // one expected event
export const STOP_TIMEOUT = 20_000; // SIGTERM to exit

// ---- helpers ----

export function withTimeout(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

export async function until(cond, ms, what, every = 25) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}

export const env = (extra = {}) => ({ ...process.env, ROOMSTORE_TOKEN_SECRET: SECRET, ...extra });

export function run(args, extraEnv = {}) {
  return new Promise((resolve) => {
    execFile(BIN, args, { env: env(extraEnv), timeout: CALL_TIMEOUT }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr });
    });
  });
}

export const children = new Set();
process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

// startServer runs `roomstore serve` on a free port and resolves once it
// logs the address it listens on.
export async function startServer(store, extraArgs = []) {
  const args = ["serve", "--listen", "127.0.0.1:0", "--store", store, ...extraArgs];
  const child = spawn(BIN, args, { env: env(), stdio: ["ignore", "inherit", "pipe"] });
  children.add(child);
  const logs = [];
  const exited = new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      children.delete(child);
      resolve(code ?? signal);
    });
  });
  let pending = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (s) => {
    pending += s;
    const lines = pending.split("\n");
    pending = lines.pop();
    logs.push(...lines);
    if (process.env.ROOMSTORE_TEST_VERBOSE) lines.forEach((l) => console.error("[server]", l));
  });
  const srv = {
    child,
    logs,
    exited,
    addr: null,
    // stop sends SIGTERM and resolves with the exit code (or signal).
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill("SIGTERM");
      try {
        return await withTimeout(exited, STOP_TIMEOUT, "the server's exit after SIGTERM");
      } catch (err) {
        child.kill("SIGKILL");
        throw err;
      }
    },
    waitLog(re, ms = EVENT_TIMEOUT) {
      return until(() => logs.find((l) => re.test(l)), ms, `a server log line matching ${re}`);
    },
  };
  try {
    const line = await until(
      () => {
        if (child.exitCode !== null) throw new Error(`roomstore serve exited early (${child.exitCode}):\n${logs.join("\n")}`);
        return logs.find((l) => /msg=listening /.test(l));
      },
      START_TIMEOUT,
      "roomstore serve to listen",
    );
    srv.addr = /\baddr=(\S+)/.exec(line)[1];
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  return srv;
}

export async function mintToken(room, { name = "alice", secret = SECRET, expiration } = {}) {
  const t = new ParticipantToken({ name });
  t.addRoomGrant(room);
  t.addRoleGrant("user");
  t.addApiGrant(ApiScope.agentDefault());
  return await t.toJwt({ token: secret, expiration });
}

export async function cliToken(room, name = "alice") {
  const r = await run(["token", "--name", name, "--room", room]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/, "one JWT and a newline");
  return r.stdout.trim();
}

export function roomURL(addr, room) {
  return `ws://${addr}/rooms/${encodeURIComponent(room)}`;
}

// newProtocol is the client's WebSocket protocol, with one harness fix: a
// refused upgrade (HTTP 403) leaves ws's socket CONNECTING, and the
// client's dispose() then closes it, which makes ws emit an "error" event
// after the client removed its listeners, an uncaught exception
// (MESHAGENT-PROTOCOL.md, test harness notes). A listener of our own
// takes that event; the client's own error handling is untouched.
export function newProtocol(url, token) {
  const protocol = new WebSocketClientProtocol({ url, token });
  const channel = protocol.channel;
  const start = channel.start.bind(channel);
  channel.start = (...args) => {
    start(...args);
    channel.webSocket?.on("error", () => {});
  };
  return protocol;
}

export function newRoomClient(addr, room, token) {
  const url = `${roomURL(addr, room)}?token=${encodeURIComponent(token)}`;
  const client = new RoomClient({ protocolFactory: () => newProtocol(url, token), reconnectTimeout: 0 });
  client.ready.catch(() => {}); // start() reports the failure; ready rejects unobserved
  return client;
}

// connect joins room as a new participant; the client is disposed when
// the test ends.
export async function connect(t, addr, room, { token, name = "alice" } = {}) {
  token ??= await mintToken(room, { name });
  const client = newRoomClient(addr, room, token);
  await withTimeout(client.start(), CALL_TIMEOUT, `joining room ${room}`);
  assert.ok(client.localParticipant?.id, "the connected message gave a participant id");
  t.after(() => close(client));
  return client;
}

// close disposes a client once the requests it sent on its own (such as
// the close chunk after a refused upload) have their answers.
export async function close(client) {
  if (client._closedByTest) return;
  client._closedByTest = true;
  await until(() => !(client._pendingRequests?.size > 0), 2_000, "the client's last requests").catch(() => {});
  client.dispose();
}

// call bounds one client call.
export const call = (promise, what) => withTimeout(promise, CALL_TIMEOUT, what);

export async function rejectsWithCode(promise, code, what) {
  await assert.rejects(call(promise, what), (err) => {
    assert.equal(err?.name, "RoomServerException", `${what}: ${err}`);
    assert.equal(err.code, code, `${what}: ${err.message}`);
    return true;
  });
}

// recorder keeps a participant's storage events, in order.
export function recorder(client) {
  const events = [];
  const on = (type, pick) => client.storage.on(type, (e) => events.push({ type, ...pick(e) }));
  on("file.updated", (e) => ({ path: e.path, participantId: e.participantId }));
  on("file.deleted", (e) => ({ path: e.path, participantId: e.participantId }));
  on("file.moved", (e) => ({ sourcePath: e.sourcePath, destinationPath: e.destinationPath, participantId: e.participantId }));
  return {
    events,
    waitFor(match, what) {
      return until(() => events.find((e) => Object.entries(match).every(([k, v]) => e[k] === v)), EVENT_TIMEOUT, `event ${what ?? JSON.stringify(match)}`, 5);
    },
  };
}

export const enc = new TextEncoder();
export const dec = new TextDecoder();
let roomSeq = 0;
export const freshRoom = (prefix) => `${prefix}-${process.pid}-${++roomSeq}`;

export async function readStream(stream) {
  const hash = createHash("sha256");
  let start = null;
  let size = 0;
  for await (const chunk of stream) {
    if (chunk.headers.kind === "start") {
      start = chunk.headers;
      continue;
    }
    hash.update(chunk.data);
    size += chunk.data.length;
  }
  return { start, size, sha256: hash.digest("hex") };
}

// regularFiles lists the files under dir, leaving out the backend's
// reserved .roomstore folder.
export async function regularFiles(dir) {
  const out = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const rel = join(e.parentPath ?? e.path, e.name).slice(dir.length + 1);
    if (e.isFile() && !rel.split("/").some((p) => p.startsWith(".roomstore"))) out.push(rel);
  }
  return out.sort();
}

// serveForSuite runs roomstore serve on a fresh store of kind (a
// temporary folder per suite for file://, one folder per room) for the
// suite it is called in, hands the server and the folder to set, and
// stops the server after the suite (it must exit 0).
export function serveForSuite(kind, prefix, set) {
  let srv;
  let dir;
  before(async () => {
    let store = "mem://";
    if (kind === "file") {
      dir = await mkdtemp(join(tmpdir(), prefix));
      store = `file://${dir}/{room}`;
    }
    srv = await startServer(store);
    set(srv, dir);
  });
  after(async () => {
    try {
      if (srv) assert.equal(await srv.stop(), 0, "roomstore serve exits 0 after SIGTERM:\n" + srv.logs.slice(-20).join("\n"));
    } finally {
      if (dir) await rm(dir, { recursive: true, force: true });
    }
  });
}

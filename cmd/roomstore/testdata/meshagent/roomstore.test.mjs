// The MeshAgent TypeScript client (@meshagent/meshagent 0.39.9, the version
// MESHAGENT-PROTOCOL.md describes) against a real `roomstore serve`
// process. Builds nothing: ROOMSTORE_BIN names the binary (make test-node
// builds it). Every wait has a deadline and every server is stopped with
// SIGTERM (and must exit 0) or, failing that, killed.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { connect as connectTCP, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

// 0.39.9's ESM build cannot be imported by name; its CommonJS build can.
const require = createRequire(import.meta.url);
const { ApiScope, ParticipantToken, RoomClient, WebSocketClientProtocol } = require("@meshagent/meshagent");

const BIN = process.env.ROOMSTORE_BIN;
if (!BIN) {
  throw new Error("set ROOMSTORE_BIN to the roomstore binary (make test-node builds it)");
}
const SECRET = "node-test-secret-" + randomBytes(16).toString("hex");
const START_TIMEOUT = 20_000; // a server's "listening" line
const CALL_TIMEOUT = 15_000; // one client call
const EVENT_TIMEOUT = 10_000; // one expected event
const STOP_TIMEOUT = 20_000; // SIGTERM to exit

// A refused start() leaves room.ready rejected without a handler, and a
// request still in flight at dispose() rejects unobserved inside the
// client (MESHAGENT-PROTOCOL.md, test harness notes): such client-side
// RoomServerExceptions are expected. Anything else fails the run.
const strayRejections = [];
process.on("unhandledRejection", (err) => strayRejections.push(err));
after(() => {
  const unexpected = strayRejections.filter((e) => e?.name !== "RoomServerException");
  assert.deepEqual(unexpected.map(String), [], "unexpected unhandled rejections");
});

// ---- helpers ----

function withTimeout(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

async function until(cond, ms, what, every = 25) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}

const env = (extra = {}) => ({ ...process.env, ROOMSTORE_TOKEN_SECRET: SECRET, ...extra });

function run(args, extraEnv = {}) {
  return new Promise((resolve) => {
    execFile(BIN, args, { env: env(extraEnv), timeout: CALL_TIMEOUT }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr });
    });
  });
}

const children = new Set();
process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

// startServer runs `roomstore serve` on a free port and resolves once it
// logs the address it listens on.
async function startServer(store, extraArgs = []) {
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

async function mintToken(room, { name = "alice", secret = SECRET, expiration } = {}) {
  const t = new ParticipantToken({ name });
  t.addRoomGrant(room);
  t.addRoleGrant("user");
  t.addApiGrant(ApiScope.agentDefault());
  return await t.toJwt({ token: secret, expiration });
}

async function cliToken(room, name = "alice") {
  const r = await run(["token", "--name", name, "--room", room]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/, "one JWT and a newline");
  return r.stdout.trim();
}

function roomURL(addr, room) {
  return `ws://${addr}/rooms/${encodeURIComponent(room)}`;
}

// newProtocol is the client's WebSocket protocol, with one harness fix: a
// refused upgrade (HTTP 403) leaves ws's socket CONNECTING, and the
// client's dispose() then closes it, which makes ws emit an "error" event
// after the client removed its listeners, an uncaught exception
// (MESHAGENT-PROTOCOL.md, test harness notes). A listener of our own
// takes that event; the client's own error handling is untouched.
function newProtocol(url, token) {
  const protocol = new WebSocketClientProtocol({ url, token });
  const channel = protocol.channel;
  const start = channel.start.bind(channel);
  channel.start = (...args) => {
    start(...args);
    channel.webSocket?.on("error", () => {});
  };
  return protocol;
}

function newRoomClient(addr, room, token) {
  const url = `${roomURL(addr, room)}?token=${encodeURIComponent(token)}`;
  const client = new RoomClient({ protocolFactory: () => newProtocol(url, token), reconnectTimeout: 0 });
  client.ready.catch(() => {}); // start() reports the failure; ready rejects unobserved
  return client;
}

// connect joins room as a new participant; the client is disposed when
// the test ends.
async function connect(t, addr, room, { token, name = "alice" } = {}) {
  token ??= await mintToken(room, { name });
  const client = newRoomClient(addr, room, token);
  await withTimeout(client.start(), CALL_TIMEOUT, `joining room ${room}`);
  assert.ok(client.localParticipant?.id, "the connected message gave a participant id");
  t.after(() => close(client));
  return client;
}

// close disposes a client once the requests it sent on its own (such as
// the close chunk after a refused upload) have their answers.
async function close(client) {
  if (client._closedByTest) return;
  client._closedByTest = true;
  await until(() => !(client._pendingRequests?.size > 0), 2_000, "the client's last requests").catch(() => {});
  client.dispose();
}

// call bounds one client call.
const call = (promise, what) => withTimeout(promise, CALL_TIMEOUT, what);

async function rejectsWithCode(promise, code, what) {
  await assert.rejects(call(promise, what), (err) => {
    assert.equal(err?.name, "RoomServerException", `${what}: ${err}`);
    assert.equal(err.code, code, `${what}: ${err.message}`);
    return true;
  });
}

// recorder keeps a participant's storage events, in order.
function recorder(client) {
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

const enc = new TextEncoder();
const dec = new TextDecoder();
let roomSeq = 0;
const freshRoom = (prefix) => `${prefix}-${process.pid}-${++roomSeq}`;

async function readStream(stream) {
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
async function regularFiles(dir) {
  const out = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const rel = join(e.parentPath ?? e.path, e.name).slice(dir.length + 1);
    if (e.isFile() && !rel.split("/").some((p) => p.startsWith(".roomstore"))) out.push(rel);
  }
  return out.sort();
}

// ---- the suites ----

for (const kind of ["file", "mem"]) {
  describe(`roomstore serve --store ${kind}://`, () => {
    let srv;
    let dir; // file:// only: the folder holding one folder per room

    before(async () => {
      let store = "mem://";
      if (kind === "file") {
        dir = await mkdtemp(join(tmpdir(), "roomstore-node-"));
        store = `file://${dir}/{room}`;
      }
      srv = await startServer(store);
    });

    after(async () => {
      try {
        if (srv) assert.equal(await srv.stop(), 0, "roomstore serve exits 0 after SIGTERM:\n" + srv.logs.slice(-20).join("\n"));
      } finally {
        if (dir) await rm(dir, { recursive: true, force: true });
      }
    });

    test("every storage call works through the client", async (t) => {
      const room = freshRoom("calls");
      const c = await connect(t, srv.addr, room);
      const s = c.storage;

      assert.equal(await call(s.exists("docs/a.txt"), "exists"), false);
      assert.equal(await call(s.stat("docs/a.txt"), "stat"), null);
      assert.deepEqual(await call(s.list(""), "list"), []);

      await call(s.upload("docs/a.txt", enc.encode("hello, room")), "upload");
      assert.equal(await call(s.exists("docs/a.txt"), "exists"), true);
      assert.equal(await call(s.exists("docs"), "exists folder"), true);
      const st = await call(s.stat("docs/a.txt"), "stat");
      assert.equal(st.name, "a.txt");
      assert.equal(st.isFolder, false);
      assert.equal(st.size, 11);
      assert.ok(st.updatedAt instanceof Date && !Number.isNaN(st.updatedAt.getTime()), "updatedAt is a date");
      const folder = await call(s.stat("docs"), "stat folder");
      assert.equal(folder.isFolder, true);

      const top = await call(s.list(""), "list root");
      assert.deepEqual(top.map((e) => [e.name, e.isFolder]), [["docs", true]]);
      const inDocs = await call(s.list("docs"), "list docs");
      assert.deepEqual(inDocs.map((e) => [e.name, e.isFolder, e.size]), [["a.txt", false, 11]]);

      const whole = await call(s.download("docs/a.txt"), "download");
      assert.equal(dec.decode(whole.data), "hello, room");
      assert.equal(whole.name, "a.txt");
      assert.match(whole.mimeType, /^text\/plain/);

      const streamed = await call(readStream(await s.downloadStream("docs/a.txt")), "downloadStream");
      assert.equal(streamed.start.size, 11);
      assert.equal(streamed.start.name, "a.txt");
      assert.equal(streamed.sha256, createHash("sha256").update("hello, room").digest("hex"));

      const url = await call(s.downloadUrl("docs/a.txt"), "downloadUrl");
      assert.ok(url.startsWith(`http://${srv.addr}/files/`), url);
      const res = await call(fetch(url), "fetch of the download URL");
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "hello, room");
      const tampered = await call(fetch(url.replace("a.txt", "b.txt")), "fetch of a tampered URL");
      assert.equal(tampered.status, 403);
      await tampered.body?.cancel();

      async function* pieces() {
        yield enc.encode("stre");
        yield enc.encode("amed");
      }
      await call(s.uploadStream("docs/s.txt", pieces()), "uploadStream");
      assert.equal(dec.decode((await call(s.download("docs/s.txt"), "download")).data), "streamed");
      await call(s.upload("docs/s.txt", enc.encode("replaced"), { overwrite: true }), "upload overwrite");
      assert.equal(dec.decode((await call(s.download("docs/s.txt"), "download")).data), "replaced");
      await call(s.upload("empty.txt", new Uint8Array(0)), "upload of an empty file");
      const empty = await call(s.download("empty.txt"), "download of an empty file");
      assert.equal(empty.data.length, 0);

      await call(s.move("docs/a.txt", "docs/b.txt"), "move");
      assert.equal(await call(s.exists("docs/a.txt"), "exists"), false);
      assert.equal(dec.decode((await call(s.download("docs/b.txt"), "download")).data), "hello, room");
      await rejectsWithCode(s.move("docs/b.txt", "docs/s.txt"), 409, "move onto an existing file");
      assert.equal(dec.decode((await call(s.download("docs/s.txt"), "download")).data), "replaced");
      await call(s.move("docs/b.txt", "docs/s.txt", { overwrite: true }), "move with overwrite");
      assert.equal(dec.decode((await call(s.download("docs/s.txt"), "download")).data), "hello, room");
      await rejectsWithCode(s.move("nothing", "else"), 404, "move of a missing file");
      await call(s.move("docs", "moved"), "move of a folder");
      assert.deepEqual((await call(s.list("moved"), "list")).map((e) => e.name), ["s.txt"]);

      await rejectsWithCode(s.download("missing.txt"), 404, "download of a missing file");
      await rejectsWithCode(s.delete("missing.txt"), 404, "delete of a missing file");
      await call(s.delete("empty.txt"), "delete");
      assert.equal(await call(s.exists("empty.txt"), "exists"), false);

      for (const p of ["tree/x/1.txt", "tree/x/2.txt", "tree/y.txt"]) await call(s.upload(p, enc.encode(p)), "upload");
      await assert.rejects(call(s.delete("tree"), "delete of a folder without recursive"));
      assert.equal(await call(s.exists("tree/x/1.txt"), "exists"), true);
      await call(s.delete("tree", { recursive: true }), "recursive delete");
      assert.equal(await call(s.exists("tree"), "exists"), false);
      assert.deepEqual((await call(s.list(""), "list")).map((e) => e.name), ["moved"]);
    });

    test("participants see each other's events, other rooms see none", async (t) => {
      const roomA = freshRoom("events-a");
      const roomB = freshRoom("events-b");
      const p1 = await connect(t, srv.addr, roomA, { name: "p1" });
      const p2 = await connect(t, srv.addr, roomA, { name: "p2", token: await cliToken(roomA, "p2") });
      const q = await connect(t, srv.addr, roomB, { name: "q" });
      const [r1, r2, rq] = [recorder(p1), recorder(p2), recorder(q)];
      const id1 = p1.localParticipant.id;
      const id2 = p2.localParticipant.id;
      assert.notEqual(id1, id2, "each connection is its own participant");

      await call(p1.storage.upload("e/f.txt", enc.encode("1")), "upload by p1");
      for (const r of [r1, r2]) await r.waitFor({ type: "file.updated", path: "e/f.txt" });
      await call(p2.storage.move("e/f.txt", "e/g.txt"), "move by p2");
      for (const r of [r1, r2]) await r.waitFor({ type: "file.moved", destinationPath: "e/g.txt" });
      await call(p1.storage.delete("e/g.txt"), "delete by p1");
      for (const r of [r1, r2]) await r.waitFor({ type: "file.deleted", path: "e/g.txt" });

      // A later change in room B, seen there, proves that room B got none
      // of room A's events; and the other way round.
      await call(q.storage.upload("marker-b", enc.encode("b")), "upload in room B");
      await rq.waitFor({ type: "file.updated", path: "marker-b" });
      await call(p1.storage.upload("marker-a", enc.encode("a")), "upload in room A");
      for (const r of [r1, r2]) await r.waitFor({ type: "file.updated", path: "marker-a" });

      const want = [
        { type: "file.updated", path: "e/f.txt", participantId: id1 },
        { type: "file.moved", sourcePath: "e/f.txt", destinationPath: "e/g.txt", participantId: id2 },
        { type: "file.deleted", path: "e/g.txt", participantId: id1 },
        { type: "file.updated", path: "marker-a", participantId: id1 },
      ];
      assert.deepEqual(r1.events, want, "p1's events, its own included");
      assert.deepEqual(r2.events, want, "p2's events");
      assert.deepEqual(rq.events, [{ type: "file.updated", path: "marker-b", participantId: q.localParticipant.id }], "room B saw only its own change");
    });

    test("an upload to an existing path without overwrite is refused with 409", async (t) => {
      const room = freshRoom("overwrite");
      const c = await connect(t, srv.addr, room);
      const r = recorder(c);
      await call(c.storage.upload("o.txt", enc.encode("first")), "upload");
      await r.waitFor({ type: "file.updated", path: "o.txt" });
      await rejectsWithCode(c.storage.upload("o.txt", enc.encode("second")), 409, "upload without overwrite");
      async function* one() {
        yield enc.encode("third");
      }
      await rejectsWithCode(c.storage.uploadStream("o.txt", one()), 409, "uploadStream without overwrite");
      assert.equal(dec.decode((await call(c.storage.download("o.txt"), "download")).data), "first");
      assert.equal((await call(c.storage.stat("o.txt"), "stat")).size, 5);
      await call(c.storage.upload("o.txt", enc.encode("fourth!"), { overwrite: true }), "upload with overwrite");
      assert.equal(dec.decode((await call(c.storage.download("o.txt"), "download")).data), "fourth!");
      await r.waitFor({ type: "file.updated", path: "o.txt", participantId: c.localParticipant.id });
      assert.equal(r.events.length, 2, "one event per commit, none for the refusals");
    });

    test("50 MiB round-trips through uploadStream and downloadStream", async (t) => {
      const room = freshRoom("big");
      const c = await connect(t, srv.addr, room);
      const size = 50 << 20;
      const sent = createHash("sha256");
      async function* data() {
        for (let i = 0; i < 50; i++) {
          const b = randomBytes(1 << 20);
          sent.update(b);
          yield b;
        }
      }
      const t0 = performance.now();
      await withTimeout(c.storage.uploadStream("big.bin", data(), { size }), 120_000, "50 MiB uploadStream");
      const t1 = performance.now();
      const want = sent.digest("hex");
      assert.equal((await call(c.storage.stat("big.bin"), "stat")).size, size);
      const got = await withTimeout(readStream(await c.storage.downloadStream("big.bin")), 120_000, "50 MiB downloadStream");
      const t2 = performance.now();
      assert.equal(got.start.size, size);
      assert.equal(got.size, size);
      assert.equal(got.sha256, want);
      const res = await call(fetch(await call(c.storage.downloadUrl("big.bin"), "downloadUrl")), "fetch");
      assert.equal(res.status, 200);
      const overHTTP = createHash("sha256");
      for await (const b of res.body) overHTTP.update(b);
      assert.equal(overHTTP.digest("hex"), want, "the download URL serves the same bytes");
      t.diagnostic(`50 MiB: upload ${(t1 - t0).toFixed(0)} ms, download ${(t2 - t1).toFixed(0)} ms`);
    });

    test("names with spaces, quotes, escapes, emoji and t-/ beside t/ round-trip", async (t) => {
      const room = freshRoom("names");
      const c = await connect(t, srv.addr, room);
      const names = ["with space.txt", `quo"te's.txt`, "%41.txt", "what?.txt", "hash#tag.txt", "a+b.txt", "back\\slash.txt", "emoji 🎉.txt"];
      for (const n of names) await call(c.storage.upload(`w/${n}`, enc.encode(`content of ${n}`)), `upload ${n}`);
      await call(c.storage.upload("w/t-/x", enc.encode("t-")), "upload t-/x");
      await call(c.storage.upload("w/t/x", enc.encode("t")), "upload t/x");
      for (const n of names) {
        assert.equal(dec.decode((await call(c.storage.download(`w/${n}`), `download ${n}`)).data), `content of ${n}`);
        const res = await call(fetch(await call(c.storage.downloadUrl(`w/${n}`), `downloadUrl ${n}`)), `fetch ${n}`);
        assert.equal(res.status, 200, n);
        assert.equal(await res.text(), `content of ${n}`);
      }
      assert.equal(dec.decode((await call(c.storage.download("w/t-/x"), "download")).data), "t-");
      assert.equal(dec.decode((await call(c.storage.download("w/t/x"), "download")).data), "t");
      const listed = await call(c.storage.list("w"), "list");
      const want = [...names.map((n) => [n, false]), ["t", true], ["t-", true]];
      const key = (a) => a[0];
      assert.deepEqual(listed.map((e) => [e.name, e.isFolder]).sort((a, b) => (key(a) < key(b) ? -1 : 1)), want.sort((a, b) => (key(a) < key(b) ? -1 : 1)));
      assert.equal((await call(c.storage.stat("w/%41.txt"), "stat")).name, "%41.txt");
      assert.equal(await call(c.storage.exists("w/A.txt"), "exists"), false, "%41 is not unescaped");
      if (dir) {
        const onDisk = await regularFiles(join(dir, room));
        assert.deepEqual(onDisk, [...names.map((n) => `w/${n}`), "w/t-/x", "w/t/x"].sort());
      }
    });

    test("a room name that needs escaping is one room, one folder", async (t) => {
      const room = `room %41 ?#+ "q" 🎉 ${++roomSeq}`;
      const c = await connect(t, srv.addr, room);
      await call(c.storage.upload("f.txt", enc.encode("in a weird room")), "upload");
      const url = await call(c.storage.downloadUrl("f.txt"), "downloadUrl");
      const res = await call(fetch(url), "fetch");
      assert.equal(res.status, 200, url);
      assert.equal(await res.text(), "in a weird room");
      const other = await connect(t, srv.addr, `room A ?#+ "q" 🎉 ${roomSeq}`);
      assert.equal(await call(other.storage.exists("f.txt"), "exists"), false, "%41 names another room than A");
      if (dir) {
        assert.deepEqual(await regularFiles(join(dir, room)), ["f.txt"], "the room's folder is named exactly as the room");
      }
    });

    test("invalid paths are refused with 400 and write nothing", async (t) => {
      const room = freshRoom("invalid");
      const c = await connect(t, srv.addr, room);
      const r = recorder(c);
      for (const p of ["../x", "a/../../x", "a//b", "nul\u0000byte", "ctl\u0001", ".roomstore/x", "a/./b"]) {
        await rejectsWithCode(c.storage.upload(p, enc.encode("nope")), 400, `upload ${JSON.stringify(p)}`);
        await rejectsWithCode(c.storage.exists(p), 400, `exists ${JSON.stringify(p)}`);
        await rejectsWithCode(c.storage.download(p), 400, `download ${JSON.stringify(p)}`);
        await rejectsWithCode(c.storage.move("anything", p), 400, `move to ${JSON.stringify(p)}`);
      }
      await call(c.storage.upload("last", enc.encode("ok")), "a valid upload");
      await r.waitFor({ type: "file.updated", path: "last" });
      assert.deepEqual(r.events.map((e) => e.path), ["last"], "no event for a refused upload");
      assert.deepEqual((await call(c.storage.list(""), "list")).map((e) => e.name), ["last"]);
      if (dir) {
        assert.deepEqual(await regularFiles(join(dir, room)), ["last"]);
        assert.equal(existsSync(join(dir, "x")), false, "nothing escaped the room's folder");
      }
    });

    test("a client disposed mid-upload leaves nothing visible", async (t) => {
      const room = freshRoom("dispose");
      const writer = await connect(t, srv.addr, room, { name: "writer" });
      const watcher = await connect(t, srv.addr, room, { name: "watcher" });
      const seen = recorder(watcher);
      const writerID = writer.localParticipant.id;
      let reachedWait;
      const waiting = new Promise((resolve) => (reachedWait = resolve));
      let release;
      const never = new Promise((resolve) => (release = resolve));
      t.after(() => release());
      const chunk = randomBytes(256 << 10);
      async function* stalled() {
        for (let i = 0; i < 4; i++) yield chunk;
        reachedWait();
        await never; // the client disposes meanwhile
      }
      const upload = writer.storage.uploadStream("partial.bin", stalled(), { size: 8 << 20 });
      const outcome = upload.then(
        () => "resolved",
        (err) => err,
      );
      await withTimeout(waiting, CALL_TIMEOUT, "the upload to send its chunks");
      await sleep(200); // the chunks sent reach the server
      assert.equal(await call(watcher.storage.exists("partial.bin"), "exists"), false, "nothing visible before close");
      await close(writer);
      const end = await withTimeout(outcome, CALL_TIMEOUT, "the upload to end");
      assert.notEqual(end, "resolved", "a disposed upload does not succeed");
      await srv.waitLog(new RegExp(`participant disconnected.*participant=${writerID}`));
      // Once the server dropped the connection the upload is aborted: for a
      // while after, nothing appears.
      const deadline = Date.now() + 1_000;
      while (Date.now() < deadline) {
        assert.equal(await call(watcher.storage.exists("partial.bin"), "exists"), false);
        await sleep(100);
      }
      assert.equal(await call(watcher.storage.stat("partial.bin"), "stat"), null);
      assert.deepEqual(await call(watcher.storage.list(""), "list"), []);
      assert.deepEqual(seen.events, [], "no event for an aborted upload");
      if (dir) {
        const big = [];
        for (const e of await readdir(join(dir, room), { recursive: true, withFileTypes: true })) {
          const p = join(e.parentPath ?? e.path, e.name);
          if (e.isFile() && (await stat(p)).size >= chunk.length) big.push(p);
        }
        assert.deepEqual(big, [], "no staged bytes are left on disk");
      }
    });

    if (kind === "file") {
      test("tokens: roomstore token and ParticipantToken admit; a wrong secret, another room, an expired or empty token are refused", async (t) => {
        const room = freshRoom("tokens");
        await connect(t, srv.addr, room, { token: await cliToken(room) });
        await connect(t, srv.addr, room, { token: await mintToken(room, { expiration: new Date(Date.now() + 60_000) }) });
        const refused = {
          "wrong secret": await mintToken(room, { secret: "not-the-secret" }),
          "another room": await cliToken(room + "-other"),
          expired: await mintToken(room, { expiration: new Date(Date.now() - 60_000) }),
          "no token": "",
        };
        for (const [what, token] of Object.entries(refused)) {
          const client = newRoomClient(srv.addr, room, token);
          const refusals = () => srv.logs.filter((l) => l.includes("room connection refused")).length;
          const before = refusals();
          await assert.rejects(withTimeout(client.start(), CALL_TIMEOUT, `start with ${what}`), (err) => {
            assert.equal(err?.name, "RoomServerException", `${what}: ${err}`);
            assert.match(err.message, /403/, what);
            return true;
          });
          await until(() => refusals() > before, EVENT_TIMEOUT, `the server's refusal of ${what}`);
          await sleep(300); // a retry would come in by now
          assert.equal(refusals() - before, 1, `${what}: refused once, not retried`);
        }
        const cli = await run(["token", "--name", "x", "--room", room], { ROOMSTORE_TOKEN_SECRET: "" });
        assert.equal(cli.code, 1);
        assert.match(cli.stderr, /ROOMSTORE_TOKEN_SECRET/);
      });
    }
  });
}

describe("roomstore serve shutdown", () => {
  let dir;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "roomstore-node-shutdown-"));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  const store = () => `file://${dir}/{room}`;

  test("SIGTERM lets an upload under way finish, then exits 0", async (t) => {
    const room = freshRoom("drain");
    const srv = await startServer(store(), ["--shutdown-timeout", "20s"]);
    t.after(() => srv.child.kill("SIGKILL"));
    const c = await connect(t, srv.addr, room);
    const want = createHash("sha256");
    let firstSent;
    const started = new Promise((resolve) => (firstSent = resolve));
    async function* slow() {
      for (let i = 0; i < 8; i++) {
        const b = randomBytes(300 << 10);
        want.update(b);
        yield b;
        if (i === 0) firstSent();
        await sleep(100);
      }
    }
    const upload = c.storage.uploadStream("slow.bin", slow());
    await withTimeout(started, CALL_TIMEOUT, "the upload to start");
    srv.child.kill("SIGTERM");
    const outcome = await withTimeout(
      upload.then(
        () => "resolved",
        (err) => err,
      ),
      CALL_TIMEOUT,
      "the upload to finish during shutdown",
    );
    assert.equal(outcome, "resolved", String(outcome));
    assert.equal(await withTimeout(srv.exited, STOP_TIMEOUT, "exit"), 0, srv.logs.join("\n"));

    const again = await startServer(store());
    t.after(() => again.stop());
    const r = await connect(t, again.addr, room);
    const got = await call(readStream(await r.storage.downloadStream("slow.bin")), "downloadStream");
    assert.equal(got.sha256, want.digest("hex"), "the upload finished whole");
  });

  test("SIGTERM aborts an upload that outlasts --shutdown-timeout, leaving nothing, and exits 0", async (t) => {
    const room = freshRoom("abort");
    const srv = await startServer(store(), ["--shutdown-timeout", "1s"]);
    t.after(() => srv.child.kill("SIGKILL"));
    const c = await connect(t, srv.addr, room);
    let release;
    const never = new Promise((resolve) => (release = resolve));
    t.after(() => release());
    let stalledAt;
    const stalledNow = new Promise((resolve) => (stalledAt = resolve));
    async function* stalled() {
      yield randomBytes(256 << 10);
      yield randomBytes(256 << 10);
      stalledAt();
      await never;
    }
    const outcome = c.storage.uploadStream("stuck.bin", stalled()).then(
      () => "resolved",
      (err) => err,
    );
    await withTimeout(stalledNow, CALL_TIMEOUT, "the upload to stall");
    const t0 = Date.now();
    srv.child.kill("SIGTERM");
    assert.equal(await withTimeout(srv.exited, STOP_TIMEOUT, "exit"), 0, srv.logs.join("\n"));
    const took = Date.now() - t0;
    assert.ok(took >= 900, `waited for the upload until the timeout (${took} ms)`);
    assert.notEqual(await withTimeout(outcome, CALL_TIMEOUT, "the upload to end"), "resolved");
    assert.ok(srv.logs.some((l) => l.includes("shutdown complete")), srv.logs.join("\n"));

    const again = await startServer(store());
    t.after(() => again.stop());
    const r = await connect(t, again.addr, room);
    assert.equal(await call(r.storage.exists("stuck.bin"), "exists"), false, "the aborted upload left nothing");
    assert.deepEqual(await regularFiles(join(dir, room)), []);
  });
});

// startNATS runs nats-server (NATS_SERVER_BIN, which make test-node
// installs) with JetStream on a free port and resolves once it accepts
// connections.
async function startNATS(dir) {
  const bin = process.env.NATS_SERVER_BIN;
  if (!bin) throw new Error("set NATS_SERVER_BIN to the nats-server binary (make test-node installs it)");
  const port = await new Promise((resolve, reject) => {
    const l = createServer();
    l.once("error", reject);
    l.listen(0, "127.0.0.1", () => {
      const { port } = l.address();
      l.close(() => resolve(port));
    });
  });
  const child = spawn(bin, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], { stdio: ["ignore", "ignore", "pipe"] });
  children.add(child);
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => {
    children.delete(child);
    resolve(code ?? signal);
  }));
  let log = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (s) => (log = (log + s).slice(-8192)));
  await until(
    () => {
      if (child.exitCode !== null) throw new Error(`nats-server exited early (${child.exitCode}):\n${log}`);
      return new Promise((resolve) => {
        const c = connectTCP(port, "127.0.0.1");
        c.once("connect", () => (c.destroy(), resolve(true)));
        c.once("error", () => resolve(false));
      });
    },
    START_TIMEOUT,
    "nats-server to listen",
    50,
  );
  return {
    url: `nats://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      await withTimeout(exited, STOP_TIMEOUT, "nats-server's exit").catch(() => child.kill("SIGKILL"));
    },
  };
}

describe("two roomstore serve replicas with --events", () => {
  let dir, nats, a, b;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "roomstore-node-replicas-"));
    nats = await startNATS(join(dir, "nats"));
    const store = `file://${dir}/rooms/{room}`;
    [a, b] = await Promise.all([
      startServer(store, ["--events", nats.url]),
      startServer(store, ["--events", nats.url]),
    ]);
  });
  after(async () => {
    try {
      for (const s of [a, b]) if (s) assert.equal(await s.stop(), 0, "replica exits 0:\n" + s.logs.slice(-20).join("\n"));
    } finally {
      await nats?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    }
  });

  test("a change through one replica reaches a participant on the other, once, with the writer's id", async (t) => {
    const room = freshRoom("replicas");
    const p1 = await connect(t, a.addr, room, { name: "p1" });
    const p2 = await connect(t, b.addr, room, { name: "p2" });
    const [r1, r2] = [recorder(p1), recorder(p2)];
    const id1 = p1.localParticipant.id;
    const id2 = p2.localParticipant.id;

    await call(p1.storage.upload("x/a.txt", enc.encode("from replica A")), "upload through A");
    await r2.waitFor({ type: "file.updated", path: "x/a.txt" }, "A's upload on B");
    const got = await call(p2.storage.download("x/a.txt"), "download through B");
    assert.equal(dec.decode(got.data), "from replica A", "B reads what A wrote: one store");
    await call(p2.storage.move("x/a.txt", "x/b.txt"), "move through B");
    await r1.waitFor({ type: "file.moved", destinationPath: "x/b.txt" }, "B's move on A");
    await call(p1.storage.delete("x/b.txt"), "delete through A");
    for (const r of [r1, r2]) await r.waitFor({ type: "file.deleted", path: "x/b.txt" });
    // A marker from each side, seen on both, closes the run: a change
    // delivered twice by then shows in the counts below (the Go tests of
    // events_nats count exactly-once over 1,000 changes and faults).
    await call(p2.storage.upload("marker-b", enc.encode("b")), "marker through B");
    await call(p1.storage.upload("marker-a", enc.encode("a")), "marker through A");
    for (const r of [r1, r2]) {
      await r.waitFor({ type: "file.updated", path: "marker-b" });
      await r.waitFor({ type: "file.updated", path: "marker-a" });
    }
    const first = [
      { type: "file.updated", path: "x/a.txt", participantId: id1 },
      { type: "file.moved", sourcePath: "x/a.txt", destinationPath: "x/b.txt", participantId: id2 },
      { type: "file.deleted", path: "x/b.txt", participantId: id1 },
    ];
    const markers = [
      { type: "file.updated", path: "marker-b", participantId: id2 },
      { type: "file.updated", path: "marker-a", participantId: id1 },
    ];
    for (const [name, r] of [["p1 on A", r1], ["p2 on B", r2]]) {
      assert.deepEqual(r.events.slice(0, 3), first, `${name}: every change once, in order`);
      // The two markers were made on different replicas at once; each
      // replica may see them in either order, but each exactly once.
      const rest = r.events.slice(3);
      assert.equal(rest.length, 2, `${name}: nothing but the two markers after: ${JSON.stringify(rest)}`);
      for (const m of markers) assert.equal(rest.filter((e) => e.path === m.path && e.participantId === m.participantId).length, 1, `${name}: ${m.path} once`);
    }
  });
});

// The MeshAgent TypeScript client (@meshagent/meshagent 0.39.9, the version
// MESHAGENT-PROTOCOL.md describes) against a real `roomstore serve`
// process. Builds nothing: ROOMSTORE_BIN names the binary (make test-node
// builds it). Every wait has a deadline and every server is stopped with
// SIGTERM (and must exit 0) or, failing that, killed.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { connect as connectTCP, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  SECRET,
  START_TIMEOUT,
  CALL_TIMEOUT,
  EVENT_TIMEOUT,
  STOP_TIMEOUT,
  withTimeout,
  until,
  env,
  run,
  startServer,
  mintToken,
  cliToken,
  newRoomClient,
  connect,
  close,
  call,
  rejectsWithCode,
  recorder,
  enc,
  dec,
  children,
  freshRoom,
  readStream,
  regularFiles,
  serveForSuite,
} from "./harness.mjs";

// 0.39.9's ESM build cannot be imported by name; its CommonJS build can.
const require = createRequire(import.meta.url);
const {
  ApiScope,
  MessagingGrant,
  ParticipantToken,
  RoomClient,
  StorageGrant,
  StoragePathGrant,
  WebSocketClientProtocol,
  unpackMessage,
} = require("@meshagent/meshagent");


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

let roomSeq = 0; // the escaped room names' own count

// ---- the suites ----

for (const kind of ["file", "mem"]) {
  describe(`roomstore serve --store ${kind}://`, () => {
    let srv;
    let dir; // file:// only: the folder holding one folder per room
    serveForSuite(kind, "roomstore-node-", (s, d) => ([srv, dir] = [s, d]));

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

// ---- storage grants ----

// grantToken mints a token with the 0.39.9 client's own classes, as a
// MeshAgent deployment would: room, role user, and the api grant
// ApiScope({storage: StorageGrant({paths})}), paths given as [path,
// readOnly] pairs; without paths, StorageGrant() (every path).
async function grantToken(room, name, paths) {
  const t = new ParticipantToken({ name });
  t.addRoomGrant(room);
  t.addRoleGrant("user");
  const storage = new StorageGrant({ paths: paths?.map(([path, readOnly]) => new StoragePathGrant({ path, readOnly })) });
  t.addApiGrant(new ApiScope({ storage }));
  return await t.toJwt({ token: SECRET });
}

// jwtClaims decodes a token's claims, unverified.
const jwtClaims = (jwt) => JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString("utf8"));

// rawEvents keeps every storage event the client receives as the server
// sent it: the client's event objects keep only the keys they know, and
// a path a participant may not read must not appear in any key.
function rawEvents(client) {
  const raw = [];
  for (const type of ["storage.file.updated", "storage.file.deleted", "storage.file.moved"]) {
    const inner = client.protocol.getHandler(type);
    const outer = (protocol, id, ty, bytes) => {
      raw.push({ type: ty, ...unpackMessage(bytes)[0] });
      return inner(protocol, id, ty, bytes);
    };
    client.protocol.removeHandler(type, inner);
    client.protocol.addHandler(type, outer);
  }
  return raw;
}

// refused asserts that a call fails with 403 and a message: equal to
// want when it is a string, matching it when a RegExp.
async function refused(promise, want, what) {
  await assert.rejects(call(promise, what), (err) => {
    assert.equal(err?.name, "RoomServerException", `${what}: ${err}`);
    assert.equal(err.code, 403, `${what}: ${err.message}`);
    if (typeof want === "string") assert.equal(err.message, want, what);
    else assert.match(err.message, want, what);
    return true;
  });
}

// A refusal reads "<call> <path>: no <right> access"; noRead and noWrite
// match the path and the right whatever the call's name.
const escapeRE = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const noRead = (path) => new RegExp(`^\\w+ ${escapeRE(path)}: no read access$`);
const noWrite = (path) => new RegExp(`^\\w+ ${escapeRE(path)}: no write access$`);

async function* chunksOf(...parts) {
  for (const p of parts) yield enc.encode(p);
}
const sha256 = (s) => createHash("sha256").update(s).digest("hex");
const listing = (entries) => entries.map((e) => [e.name, e.isFolder]).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
const text = async (s, path) => dec.decode((await call(s.download(path), `download ${path}`)).data);

for (const kind of ["file", "mem"]) {
  describe(`storage grants in the token (roomstore serve --store ${kind}://)`, () => {
    let srv;
    let dir;
    serveForSuite(kind, "roomstore-node-grants-", (s, d) => ([srv, dir] = [s, d]));

    // seed uploads files through a full-access participant.
    async function seed(admin, files) {
      for (const [p, body] of Object.entries(files)) await call(admin.storage.upload(p, enc.encode(body)), `upload ${p}`);
    }

    test("a read-only participant reads everything; its upload, delete and move are refused with 403 and change nothing", async (t) => {
      const room = freshRoom("grant-ro");
      const admin = await connect(t, srv.addr, room, { name: "admin" });
      const viewer = await connect(t, srv.addr, room, { name: "viewer", token: await grantToken(room, "viewer", [["", true]]) });
      const [ra, rv] = [recorder(admin), recorder(viewer)];
      const files = { "docs/a.txt": "alpha", "docs/d/b.txt": "beta", "secret.txt": "secret" };
      await seed(admin, files);

      const v = viewer.storage;
      assert.equal(await call(v.exists("docs/a.txt"), "exists"), true);
      assert.equal(await call(v.exists("nothing.txt"), "exists of a missing file"), false);
      assert.equal((await call(v.stat("secret.txt"), "stat")).size, 6);
      assert.equal((await call(v.stat("docs"), "stat folder")).isFolder, true);
      assert.deepEqual(listing(await call(v.list(""), "list")), [["docs", true], ["secret.txt", false]]);
      assert.deepEqual(listing(await call(v.list("docs"), "list docs")), [["a.txt", false], ["d", true]]);
      assert.equal(await text(v, "docs/a.txt"), "alpha");
      assert.equal((await call(readStream(await v.downloadStream("docs/d/b.txt")), "downloadStream")).sha256, sha256("beta"));
      const res = await call(fetch(await call(v.downloadUrl("secret.txt"), "downloadUrl")), "fetch");
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "secret");

      await refused(v.upload("new.txt", enc.encode("x")), noWrite("new.txt"), "upload of a new file");
      await refused(v.upload("docs/a.txt", enc.encode("overwritten"), { overwrite: true }), noWrite("docs/a.txt"), "upload with overwrite");
      await refused(v.uploadStream("streamed.txt", chunksOf("str", "eamed")), noWrite("streamed.txt"), "uploadStream");
      await refused(v.delete("secret.txt"), "delete secret.txt: no write access", "delete");
      await refused(v.delete("docs", { recursive: true }), /^\w+ docs: no write access/, "recursive delete");
      await refused(v.move("docs/a.txt", "docs/moved.txt"), "move docs/a.txt: no write access", "move");
      await refused(v.move("docs", "elsewhere"), "move docs: no write access", "move of a folder");

      // A marker both must see closes the run: nothing else happened.
      await call(admin.storage.upload("marker", enc.encode("m")), "marker");
      for (const r of [ra, rv]) await r.waitFor({ type: "file.updated", path: "marker" });
      const adminID = admin.localParticipant.id;
      const want = [...Object.keys(files), "marker"].map((path) => ({ type: "file.updated", path, participantId: adminID }));
      assert.deepEqual(ra.events, want, "only the full-access participant's uploads happened");
      assert.deepEqual(rv.events, want, "the viewer reads every path, so it hears of every change");

      const a = admin.storage;
      assert.deepEqual(listing(await call(a.list(""), "list")), [["docs", true], ["marker", false], ["secret.txt", false]]);
      assert.deepEqual(listing(await call(a.list("docs"), "list docs")), [["a.txt", false], ["d", true]]);
      for (const [p, body] of Object.entries(files)) assert.equal(await text(a, p), body, `${p} unchanged`);
      for (const p of ["new.txt", "streamed.txt", "docs/moved.txt", "elsewhere"]) assert.equal(await call(a.exists(p), `exists ${p}`), false, p);
      if (dir) assert.deepEqual(await regularFiles(join(dir, room)), ["docs/a.txt", "docs/d/b.txt", "marker", "secret.txt"]);
    });

    test("the first matching entry decides a write: a read-only folder inside a writable one refuses the whole recursive delete or move", async (t) => {
      const room = freshRoom("grant-first");
      const admin = await connect(t, srv.addr, room, { name: "admin" });
      // locked/ before team/: team/locked/ is read-only. team/ before
      // open/: team/open/ stays writable.
      const editor = await connect(t, srv.addr, room, {
        name: "editor",
        token: await grantToken(room, "editor", [["team/locked/", true], ["team/", false], ["team/open/", true]]),
      });
      const files = { "team/a.txt": "a", "team/locked/l.txt": "l", "team/open/o.txt": "o" };
      await seed(admin, files);
      const e = editor.storage;
      await refused(e.upload("team/locked/new.txt", enc.encode("x")), noWrite("team/locked/new.txt"), "upload into the read-only folder");
      await refused(e.delete("team/locked/l.txt"), "delete team/locked/l.txt: no write access", "delete in the read-only folder");
      await refused(e.delete("team", { recursive: true }), /^\w+ team: no write access to team\/locked\/l\.txt$/, "recursive delete over a read-only file");
      await refused(e.move("team", "moved"), /^move team: no write access/, "move of a folder out of the grant");
      await refused(e.move("team/locked", "team/unlocked"), /^move team\/locked: no write access/, "move of the read-only folder");
      assert.equal(await text(e, "team/locked/l.txt"), "l", "readable all the same");
      await call(e.upload("team/open/new.txt", enc.encode("n")), "upload where the first entry (team/) allows it");
      await call(e.move("team/a.txt", "team/open/a.txt"), "move within the writable area");
      await call(e.delete("team/open", { recursive: true }), "recursive delete of a writable folder");
      assert.deepEqual(listing(await call(admin.storage.list("team"), "list")), [["locked", true]]);
      assert.equal(await text(admin.storage, "team/locked/l.txt"), "l");
      if (dir) assert.deepEqual(await regularFiles(join(dir, room)), ["team/locked/l.txt"]);
    });

    test("a participant limited to team/ sees, reads and writes only team/, and hears only of team/", async (t) => {
      const room = freshRoom("grant-team");
      const admin = await connect(t, srv.addr, room, { name: "admin" });
      const member = await connect(t, srv.addr, room, { name: "member", token: await grantToken(room, "member", [["team/", false]]) });
      const [ra, rt] = [recorder(admin), recorder(member)];
      const raw = rawEvents(member);
      const adminID = admin.localParticipant.id;
      const memberID = member.localParticipant.id;
      const files = {
        "team/a.txt": "a",
        "team/sub/b.txt": "b",
        "outside/x": "x",
        "outside/keep": "keep",
        "top.txt": "top",
        "teammates.txt": "mates", // "team/" is a prefix of neither
        "teamwork/z": "z",
      };
      await seed(admin, files);
      const m = member.storage;

      assert.deepEqual(listing(await call(m.list(""), "list root")), [["team", true]], "only team/ at the root");
      assert.deepEqual(listing(await call(m.list("team"), "list team")), [["a.txt", false], ["sub", true]]);
      assert.equal((await call(m.stat("team"), "stat team")).isFolder, true);
      assert.equal(await call(m.exists("team"), "exists team"), true);
      assert.equal(await text(m, "team/a.txt"), "a");
      assert.equal((await call(m.stat("team/sub/b.txt"), "stat")).size, 1);
      assert.equal(await call(m.exists("team/sub/b.txt"), "exists"), true);
      assert.equal(await call(m.exists("team/nothing"), "exists of a missing file"), false);
      assert.equal((await call(readStream(await m.downloadStream("team/sub/b.txt")), "downloadStream")).sha256, sha256("b"));
      const url = await call(m.downloadUrl("team/a.txt"), "downloadUrl");
      const res = await call(fetch(url), "fetch");
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "a");

      for (const p of ["outside/x", "top.txt", "teammates.txt", "teamwork/z", "outside/missing"]) {
        await refused(m.download(p), noRead(p), `download ${p}`);
        await refused((async () => readStream(await m.downloadStream(p)))(), noRead(p), `downloadStream ${p}`);
        await refused(m.stat(p), `stat ${p}: no read access`, `stat ${p}`);
        await refused(m.exists(p), `exists ${p}: no read access`, `exists ${p}`);
        await refused(m.downloadUrl(p), noRead(p), `downloadUrl ${p}`);
      }
      for (const f of ["outside", "teamwork"]) {
        await refused(m.list(f), `list ${f}: no read access`, `list ${f}`);
        await refused(m.stat(f), `stat ${f}: no read access`, `stat ${f}`);
        await refused(m.exists(f), `exists ${f}: no read access`, `exists ${f}`);
      }

      await call(m.upload("team/new.txt", enc.encode("new")), "upload in team/");
      await call(m.move("team/new.txt", "team/sub/new.txt"), "move within team/");
      await call(m.delete("team/sub/new.txt"), "delete in team/");
      await refused(m.upload("outside/y", enc.encode("y")), noWrite("outside/y"), "upload outside");
      await refused(m.upload("teammates.txt", enc.encode("y"), { overwrite: true }), noWrite("teammates.txt"), "upload over teammates.txt");
      await refused(m.move("team/a.txt", "outside/a.txt"), "move team/a.txt: no write access to outside/a.txt", "move out of team/");
      await refused(m.move("outside/x", "team/x"), "move outside/x: no write access", "move into team/");
      await refused(m.delete("outside/keep"), "delete outside/keep: no write access", "delete outside");
      await refused(m.delete("outside", { recursive: true }), /^\w+ outside: no write access$/, "recursive delete outside");

      // Changes by the full-access participant: only those in team/ reach
      // the member, a move across the border as its readable side.
      const a = admin.storage;
      await call(a.upload("outside/o.txt", enc.encode("o")), "upload outside");
      await call(a.upload("team/t.txt", enc.encode("t")), "upload in team/");
      await rt.waitFor({ type: "file.updated", path: "team/t.txt" }); // after it, any event of outside/o.txt would have come
      await call(a.delete("outside/keep"), "delete outside");
      await call(a.move("outside/o.txt", "outside/p.txt"), "move outside");
      await call(a.move("outside/x", "team/x"), "move into team/");
      await call(a.upload("team/y", enc.encode("y")), "upload team/y");
      await call(a.move("team/y", "outside/y"), "move out of team/");
      await call(a.upload("teammates.txt", enc.encode("mates 2"), { overwrite: true }), "upload beside team/");
      await call(a.upload("team/last", enc.encode("last")), "marker in team/");
      for (const r of [ra, rt]) await r.waitFor({ type: "file.updated", path: "team/last" });

      const own = [
        { type: "file.updated", path: "team/new.txt", participantId: memberID },
        { type: "file.moved", sourcePath: "team/new.txt", destinationPath: "team/sub/new.txt", participantId: memberID },
        { type: "file.deleted", path: "team/sub/new.txt", participantId: memberID },
      ];
      assert.deepEqual(rt.events, [
        { type: "file.updated", path: "team/a.txt", participantId: adminID }, // of the seven files seeded
        { type: "file.updated", path: "team/sub/b.txt", participantId: adminID },
        ...own,
        { type: "file.updated", path: "team/t.txt", participantId: adminID },
        { type: "file.updated", path: "team/x", participantId: adminID }, // moved in from outside/x
        { type: "file.updated", path: "team/y", participantId: adminID },
        { type: "file.deleted", path: "team/y", participantId: adminID }, // moved out to outside/y
        { type: "file.updated", path: "team/last", participantId: adminID },
      ]);
      assert.equal(raw.length, rt.events.length, "one message per event");
      const leaked = raw.filter((e) => !Object.entries(e).every(([k, v]) => k === "type" || k === "participant_id" || String(v).startsWith("team/")));
      assert.deepEqual(leaked, [], "no event names a path outside team/");
      assert.deepEqual(raw[6], { type: "storage.file.updated", path: "team/x", participant_id: adminID }, "a move in: an update, no source path");
      assert.deepEqual(raw[8], { type: "storage.file.deleted", path: "team/y", participant_id: adminID }, "a move out: a delete, no destination path");
      assert.deepEqual(ra.events.slice(Object.keys(files).length), [
        ...own,
        { type: "file.updated", path: "outside/o.txt", participantId: adminID },
        { type: "file.updated", path: "team/t.txt", participantId: adminID },
        { type: "file.deleted", path: "outside/keep", participantId: adminID },
        { type: "file.moved", sourcePath: "outside/o.txt", destinationPath: "outside/p.txt", participantId: adminID },
        { type: "file.moved", sourcePath: "outside/x", destinationPath: "team/x", participantId: adminID },
        { type: "file.updated", path: "team/y", participantId: adminID },
        { type: "file.moved", sourcePath: "team/y", destinationPath: "outside/y", participantId: adminID },
        { type: "file.updated", path: "teammates.txt", participantId: adminID },
        { type: "file.updated", path: "team/last", participantId: adminID },
      ], "the full-access participant hears of everything");

      const want = {
        "outside/p.txt": "o",
        "outside/y": "y",
        "team/a.txt": "a",
        "team/last": "last",
        "team/sub/b.txt": "b",
        "team/t.txt": "t",
        "team/x": "x",
        "teammates.txt": "mates 2",
        "teamwork/z": "z",
        "top.txt": "top",
      };
      for (const [p, body] of Object.entries(want)) assert.equal(await text(a, p), body, p);
      assert.deepEqual(listing(await call(a.list(""), "list")), [["outside", true], ["team", true], ["teammates.txt", false], ["teamwork", true], ["top.txt", false]]);
      assert.deepEqual(listing(await call(a.list("outside"), "list outside")), [["p.txt", false], ["y", false]]);
      if (dir) assert.deepEqual(await regularFiles(join(dir, room)), Object.keys(want).sort());
    });

    test("a token without an api grant, or whose api grant has no storage, joins the room but every storage call is refused with 403", async (t) => {
      const room = freshRoom("grant-none");
      const admin = await connect(t, srv.addr, room, { name: "admin" });
      const files = { "docs/a.txt": "alpha", "secret.txt": "secret" };
      await seed(admin, files);

      const bare = new ParticipantToken({ name: "bare" });
      bare.addRoomGrant(room);
      bare.addRoleGrant("user");
      const warn = console.warn; // toJwt warns that such a token cannot call the room API
      console.warn = () => {};
      let bareJWT;
      try {
        bareJWT = await bare.toJwt({ token: SECRET });
      } finally {
        console.warn = warn;
      }
      const claims = jwtClaims(bareJWT);
      assert.deepEqual(claims.grants.map((g) => g.name), ["room", "role"], "no api grant");
      const [major, minor, patch] = claims.version.split(".").map(Number);
      assert.ok(major > 0 || minor > 3 || (minor === 3 && patch > 5), `version claim ${claims.version} is newer than 0.3.5`);
      const noStorage = new ParticipantToken({ name: "nostorage" });
      noStorage.addRoomGrant(room);
      noStorage.addRoleGrant("user");
      noStorage.addApiGrant(new ApiScope({ messaging: new MessagingGrant() }));
      const noStorageJWT = await noStorage.toJwt({ token: SECRET });
      assert.deepEqual(jwtClaims(noStorageJWT).grants[2], { name: "api", scope: { messaging: {} } });

      for (const [what, token] of [["no api grant", bareJWT], ["an api grant without storage", noStorageJWT]]) {
        const c = await connect(t, srv.addr, room, { name: what, token });
        const s = c.storage;
        await refused(s.exists("secret.txt"), "exists secret.txt: no read access", `${what}: exists`);
        await refused(s.exists("missing"), "exists missing: no read access", `${what}: exists of a missing file`);
        await refused(s.stat("secret.txt"), "stat secret.txt: no read access", `${what}: stat`);
        await refused(s.list(""), /^list .*no read access$/, `${what}: list of the root`);
        await refused(s.list("docs"), "list docs: no read access", `${what}: list`);
        await refused(s.download("docs/a.txt"), noRead("docs/a.txt"), `${what}: download`);
        await refused((async () => readStream(await s.downloadStream("docs/a.txt")))(), noRead("docs/a.txt"), `${what}: downloadStream`);
        await refused(s.downloadUrl("secret.txt"), noRead("secret.txt"), `${what}: downloadUrl`);
        await refused(s.upload("new.txt", enc.encode("x")), noWrite("new.txt"), `${what}: upload`);
        await refused(s.upload("secret.txt", enc.encode("x"), { overwrite: true }), noWrite("secret.txt"), `${what}: upload with overwrite`);
        await refused(s.uploadStream("streamed.txt", chunksOf("x")), noWrite("streamed.txt"), `${what}: uploadStream`);
        await refused(s.delete("secret.txt"), "delete secret.txt: no write access", `${what}: delete`);
        await refused(s.delete("docs", { recursive: true }), /^\w+ docs: no write access$/, `${what}: recursive delete`);
        await refused(s.move("secret.txt", "moved.txt"), "move secret.txt: no write access", `${what}: move`);
      }
      const a = admin.storage;
      assert.deepEqual(listing(await call(a.list(""), "list")), [["docs", true], ["secret.txt", false]]);
      for (const [p, body] of Object.entries(files)) assert.equal(await text(a, p), body, `${p} unchanged`);
      if (dir) assert.deepEqual(await regularFiles(join(dir, room)), Object.keys(files).sort());
    });

    test("full access: ApiScope.agentDefault() and StorageGrant() without paths may do everything and hear of everything", async (t) => {
      const room = freshRoom("grant-full");
      const agent = await connect(t, srv.addr, room, { name: "agent" }); // mintToken: ApiScope.agentDefault()
      const open = await connect(t, srv.addr, room, { name: "open", token: await grantToken(room, "open") });
      assert.deepEqual(jwtClaims(await grantToken(room, "open")).grants[2], { name: "api", scope: { storage: {} } });
      const [r1, r2] = [recorder(agent), recorder(open)];
      const [id1, id2] = [agent.localParticipant.id, open.localParticipant.id];
      await call(agent.storage.upload("a/1.txt", enc.encode("one")), "upload by agent");
      await call(open.storage.uploadStream("b/2.txt", chunksOf("t", "wo")), "uploadStream by open");
      await call(open.storage.move("a/1.txt", "b/1.txt"), "move by open");
      assert.deepEqual(listing(await call(open.storage.list("b"), "list")), [["1.txt", false], ["2.txt", false]]);
      assert.equal(await text(agent.storage, "b/1.txt"), "one");
      const res = await call(fetch(await call(open.storage.downloadUrl("b/2.txt"), "downloadUrl")), "fetch");
      assert.equal(await res.text(), "two");
      await call(agent.storage.delete("b", { recursive: true }), "recursive delete by agent");
      for (const r of [r1, r2]) await r.waitFor({ type: "file.deleted", path: "b/2.txt" });
      const want = [
        { type: "file.updated", path: "a/1.txt", participantId: id1 },
        { type: "file.updated", path: "b/2.txt", participantId: id2 },
        { type: "file.moved", sourcePath: "a/1.txt", destinationPath: "b/1.txt", participantId: id2 },
        { type: "file.deleted", path: "b/1.txt", participantId: id1 },
        { type: "file.deleted", path: "b/2.txt", participantId: id1 },
      ];
      assert.deepEqual(r1.events, want);
      assert.deepEqual(r2.events, want);
      assert.deepEqual(await call(open.storage.list(""), "list"), []);
    });

    test("roomstore token --read team/ reads team/ but cannot write it; --write team/ writes it", async (t) => {
      const room = freshRoom("grant-cli");
      const cli = async (name, ...flags) => {
        const r = await run(["token", "--name", name, "--room", room, ...flags]);
        assert.equal(r.code, 0, r.stderr);
        return r.stdout.trim();
      };
      const [readTok, writeTok] = [await cli("reader", "--read", "team/"), await cli("writer", "--write", "team/")];
      // The 0.39.9 client reads the CLI's grants as the server does.
      const rg = (await ParticipantToken.fromJwt(readTok, { token: SECRET })).getApiGrant().storage;
      const wg = (await ParticipantToken.fromJwt(writeTok, { token: SECRET })).getApiGrant().storage;
      assert.deepEqual([rg.canRead("team/a.txt"), rg.canWrite("team/a.txt"), rg.canRead("outside/x")], [true, false, false]);
      assert.deepEqual([wg.canRead("team/a.txt"), wg.canWrite("team/a.txt"), wg.canRead("outside/x"), wg.canWrite("outside/x")], [true, true, false, false]);

      const admin = await connect(t, srv.addr, room, { name: "admin" });
      await seed(admin, { "team/a.txt": "a", "outside/x": "x" });
      const r = (await connect(t, srv.addr, room, { name: "reader", token: readTok })).storage;
      assert.deepEqual(listing(await call(r.list(""), "list")), [["team", true]]);
      assert.equal(await text(r, "team/a.txt"), "a");
      await refused(r.upload("team/r.txt", enc.encode("r")), noWrite("team/r.txt"), "reader: upload in team/");
      await refused(r.delete("team/a.txt"), "delete team/a.txt: no write access", "reader: delete in team/");
      await refused(r.move("team/a.txt", "team/b.txt"), "move team/a.txt: no write access", "reader: move in team/");
      await refused(r.download("outside/x"), noRead("outside/x"), "reader: download outside");

      const w = (await connect(t, srv.addr, room, { name: "writer", token: writeTok })).storage;
      await call(w.upload("team/w.txt", enc.encode("w")), "writer: upload in team/");
      await call(w.move("team/w.txt", "team/w2.txt"), "writer: move in team/");
      await call(w.delete("team/a.txt"), "writer: delete in team/");
      await refused(w.upload("outside/w", enc.encode("w")), noWrite("outside/w"), "writer: upload outside");
      await refused(w.download("outside/x"), noRead("outside/x"), "writer: download outside");

      assert.deepEqual(listing(await call(admin.storage.list("team"), "list")), [["w2.txt", false]]);
      assert.equal(await text(admin.storage, "team/w2.txt"), "w");
      assert.equal(await text(admin.storage, "outside/x"), "x");
      if (dir) assert.deepEqual(await regularFiles(join(dir, room)), ["outside/x", "team/w2.txt"]);
    });
  });
}

describe("roomstore serve quotas and budgets", () => {
  let dir;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "roomstore-node-budgets-"));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("an upload past --quota-bytes fails with code 507 and changes nothing; what a delete frees fits, once no past version keeps it", async (t) => {
    // --history-versions 0: a delete frees its bytes at once.
    const srv = await startServer(`file://${dir}/{room}`, ["--quota-bytes", "100", "--quota-files", "10", "--history-versions", "0"]);
    t.after(() => srv.stop());
    const room = freshRoom("quota");
    const c = await connect(t, srv.addr, room);
    const s = c.storage;
    await call(s.upload("a.txt", enc.encode("a".repeat(60))), "upload of 60 bytes");
    await rejectsWithCode(s.upload("b.txt", enc.encode("b".repeat(41))), 507, "upload of 41 bytes more");
    await rejectsWithCode(s.upload("a.txt", enc.encode("c".repeat(101)), { overwrite: true }), 507, "overwrite past the quota");
    assert.equal(await call(s.exists("b.txt"), "exists b.txt"), false, "the refused upload left nothing");
    assert.equal(dec.decode((await call(s.download("a.txt"), "download a.txt")).data), "a".repeat(60), "a.txt kept its content");
    await call(s.delete("a.txt"), "delete a.txt");
    await call(s.upload("b.txt", enc.encode("b".repeat(100))), "upload of 100 bytes into the room freed");

    // With a history (serve's default) the deleted version is kept, and
    // counts, until it expires.
    const kept = await startServer(`file://${dir}/kept/{room}`, ["--quota-bytes", "100", "--quota-files", "10"]);
    t.after(() => kept.stop());
    const k = (await connect(t, kept.addr, room)).storage;
    await call(k.upload("a.txt", enc.encode("a".repeat(60))), "upload of 60 bytes");
    await call(k.delete("a.txt"), "delete a.txt");
    await rejectsWithCode(k.upload("b.txt", enc.encode("b".repeat(41))), 507, "upload of 41 bytes beside the kept 60");
    await call(k.upload("b.txt", enc.encode("b".repeat(40))), "upload of the 40 bytes the kept version leaves");
  });

  test("calls past --call-rate are refused with code 429 at once, and another identity's are served", async (t) => {
    const srv = await startServer(`file://${dir}/{room}`, ["--call-rate", "5", "--call-burst", "5"]);
    t.after(() => srv.stop());
    const room = freshRoom("rate");
    const m = await connect(t, srv.addr, room, { name: "mallory" });
    const b = await connect(t, srv.addr, room, { name: "bob" });
    const began = Date.now();
    const outcomes = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        call(m.storage.exists(`x${i}`), `exists ${i}`).then(
          () => "ok",
          (err) => (err?.name === "RoomServerException" ? err.code : String(err)),
        ),
      ),
    );
    // The bucket holds 5 and refills 5 a second: no more calls are served
    // than that allows in the time they took.
    const allowed = 5 + Math.ceil(((Date.now() - began) / 1000) * 5);
    const served = outcomes.filter((o) => o === "ok").length;
    assert.ok(served >= 1 && served <= allowed, `mallory's 12 calls: ${outcomes} (at most ${allowed} allowed)`);
    assert.equal(outcomes.filter((o) => o === 429).length, 12 - served, `mallory's 12 calls: ${outcomes}`);
    assert.equal(outcomes.filter((o) => o !== "ok" && o !== 429).length, 0, `mallory's 12 calls: ${outcomes}`);
    assert.equal(await call(b.storage.exists("x"), "bob's call"), false);
  });
});

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

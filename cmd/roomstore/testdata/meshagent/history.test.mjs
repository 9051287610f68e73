// Version history (roomstore.WithHistory, on by default in roomstore
// serve) with the MeshAgent TypeScript client 0.39.9 and a Go participant
// (the roomstore command through ws://, that is roomclient) in one room
// of a real `roomstore serve` on a file:// store: the MeshAgent client's
// replies keep exactly the shapes they have from a server that keeps no
// versions, before and after the room keeps some, and a file the MeshAgent participant deletes, the Go
// participant restores, which the MeshAgent participant hears of once
// and downloads whole. Builds nothing: ROOMSTORE_BIN names the binary.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import {
  require,
  call,
  cliToken,
  close,
  connect,
  enc,
  freshRoom,
  recorder,
  roomURL,
  run,
  serveForSuite,
  startServer,
  until,
  EVENT_TIMEOUT,
} from "./harness.mjs";

const { unpackMessage } = require("@meshagent/meshagent");

// A client-side RoomServerException left unobserved at dispose() is
// expected (see roomstore.test.mjs); anything else fails the run.
const strayRejections = [];
process.on("unhandledRejection", (err) => strayRejections.push(err));
after(() => {
  const unexpected = strayRejections.filter((e) => e?.name !== "RoomServerException");
  assert.deepEqual(unexpected.map(String), [], "unexpected unhandled rejections");
});

// tap records every message the server sends the client, as the server
// sent it (the client's own objects keep only the keys they know), each
// as {type, header} with the header unpacked: the replies to its
// requests and the chunks of its streams in replies, its storage events
// in events.
function tap(client) {
  const replies = [];
  const events = [];
  const types = ["__response__", "room.tool_call_response_chunk", "storage.file.updated", "storage.file.deleted", "storage.file.moved"];
  for (const type of types) {
    const inner = client.protocol.getHandler(type);
    assert.ok(inner, `the client handles ${type}`);
    const into = type.startsWith("storage.") ? events : replies;
    const outer = (protocol, id, ty, bytes) => {
      into.push({ type: ty, header: unpackMessage(bytes)[0] });
      return inner(protocol, id, ty, bytes);
    };
    client.protocol.removeHandler(type, inner);
    client.protocol.addHandler(type, outer);
  }
  return { replies, events };
}

// shape is the structure of a JSON value: its keys, recursively, and the
// types of its leaves; an array's is the distinct shapes of its elements.
function shape(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return [...new Set(v.map((e) => JSON.stringify(shape(e))))].sort().map((s) => JSON.parse(s));
  if (typeof v === "object") return Object.fromEntries(Object.keys(v).sort().map((k) => [k, shape(v[k])]));
  return typeof v;
}

// storageCalls makes, as the MeshAgent participant, each storage call on
// the file at p (in the folder dir) and returns, call by call, the
// distinct shapes of what the server sent it meanwhile, and the messages
// themselves. Each call's window ends once the client has no request
// pending, so that no late reply lands in the next.
async function storageCalls(client, { replies }, dir, p, bytes) {
  const s = client.storage;
  const calls = [
    ["upload", () => s.upload(p, bytes)],
    ["upload overwrite", () => s.upload(p, enc.encode("replaced"), { overwrite: true })],
    ["list", () => s.list(dir)],
    ["stat", () => s.stat(p)],
    ["stat folder", () => s.stat(dir)],
    ["exists", () => s.exists(p)],
    ["download", () => s.download(p)],
    ["downloadStream", async () => {
      for await (const _ of await s.downloadStream(p));
    }],
    ["downloadUrl", () => s.downloadUrl(p)],
    ["move", () => s.move(p, `${p}.moved`)],
    ["delete", () => s.delete(`${p}.moved`)],
  ];
  const shapes = {};
  const messages = {};
  for (const [name, f] of calls) {
    replies.length = 0;
    await call(f(), `${name} ${p}`);
    await until(() => !(client._pendingRequests?.size > 0), EVENT_TIMEOUT, `the replies of ${name}`);
    shapes[name] = [...new Set(replies.map((m) => JSON.stringify({ type: m.type, header: shape(m.header) })))].sort();
    messages[name] = [...replies];
  }
  return { shapes, messages };
}

// The keys every MeshAgent client accepts in each reply
// (MESHAGENT-PROTOCOL.md, "Strict clients"): no more.
const entryKeys = ["created_at", "is_folder", "name", "size", "updated_at"];

function assertStrictShapes(messages) {
  const json = (name) => messages[name].filter((m) => m.type === "__response__" && m.header.type === "json").map((m) => m.header.json);
  for (const j of json("exists")) assert.deepEqual(Object.keys(j), ["exists"], "exists: exactly {exists}");
  for (const j of json("downloadUrl")) assert.deepEqual(Object.keys(j), ["url"], "download_url: exactly {url}");
  for (const j of json("list")) {
    assert.deepEqual(Object.keys(j), ["files"], "list: exactly {files}");
    for (const e of j.files) assert.deepEqual(Object.keys(e).sort(), entryKeys, "a listed entry");
  }
  for (const name of ["stat", "stat folder"]) {
    const [j] = json(name);
    assert.ok(j?.exists, `${name}: a json reply of what is there`);
    const extra = Object.keys(j).filter((k) => k !== "exists" && !entryKeys.includes(k));
    assert.deepEqual(extra, [], `${name}: only exists and an entry's keys (no etag)`);
  }
  const chunks = (name) => messages[name].filter((m) => m.type === "room.tool_call_response_chunk").map((m) => m.header.chunk);
  for (const name of ["upload", "upload overwrite"]) {
    for (const c of chunks(name)) {
      if (c.type === "binary") {
        assert.equal(c.headers.kind, "pull", `${name}: a pull`);
        assert.ok(Object.keys(c.headers).every((k) => k === "kind" || k === "chunk_size"), `${name}: pull headers ${JSON.stringify(c.headers)}`);
      }
    }
  }
  for (const name of ["download", "downloadStream"]) {
    const starts = chunks(name).filter((c) => c.type === "binary" && c.headers.kind === "start");
    assert.equal(starts.length, 1, `${name}: one start`);
    assert.deepEqual(Object.keys(starts[0].headers).sort(), ["kind", "mime_type", "name", "size"], `${name}: start headers`);
    for (const c of chunks(name).filter((c) => c.type === "binary" && c.headers.kind === "data")) {
      assert.deepEqual(Object.keys(c.headers), ["kind"], `${name}: data headers`);
    }
  }
}

describe("version history with the MeshAgent client and a Go participant (roomstore serve --store file://)", () => {
  let srv;
  serveForSuite("file", "roomstore-node-history-", (s) => (srv = s));

  test("replies keep their shapes once the room keeps versions; a file the MeshAgent participant deletes, the Go participant restores, and the MeshAgent participant hears of it once and downloads it whole", async (t) => {
    const room = freshRoom("history");
    const m = await connect(t, srv.addr, room, { name: "meshagent" });
    const seen = tap(m);
    const rec = recorder(m);
    const mid = m.localParticipant.id;
    const goEnv = { ROOMSTORE_STORE: roomURL(srv.addr, room), ROOMSTORE_TOKEN: await cliToken(room, "go") };
    const goRun = async (...args) => {
      const r = await run(args, goEnv);
      assert.equal(r.code, 0, `roomstore ${args.join(" ")}: exit ${r.code}, ${r.stderr}`);
      assert.equal(r.stderr, "", `roomstore ${args.join(" ")}`);
      return r.stdout;
    };

    // (a) In a room of a server that keeps no versions...
    const dir = await mkdtemp(join(tmpdir(), "roomstore-node-nohistory-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const off = await startServer(`file://${dir}/{room}`, ["--history-versions", "0"]);
    let none;
    try {
      const m0 = await connect(t, off.addr, room, { name: "meshagent" });
      none = await storageCalls(m0, tap(m0), "shapes", "shapes/a.bin", randomBytes(3000));
      await close(m0);
      const r = await run(["deleted", "--store", roomURL(off.addr, room)], { ROOMSTORE_TOKEN: goEnv.ROOMSTORE_TOKEN });
      assert.deepEqual([r.code, r.stdout, r.stderr], [0, "", ""], "a room served with --history-versions 0 keeps nothing");
    } finally {
      assert.equal(await off.stop(), 0, "roomstore serve exits 0 after SIGTERM");
    }
    assertStrictShapes(none.messages);

    // ... in a room that keeps versions, before it keeps any...
    assert.equal(await goRun("deleted"), "", "a new room keeps nothing");
    const before = await storageCalls(m, seen, "shapes", "shapes/a.bin", randomBytes(3000));
    assertStrictShapes(before.messages);
    assert.deepEqual(before.shapes, none.shapes, "every reply has the shape it has without a history");

    // ... and once it keeps versions: the MeshAgent participant's
    // overwrite, move and delete kept some, and so do the Go
    // participant's restore and delete of one.
    const gone = (await goRun("deleted", "shapes", "--json")).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(gone.map((v) => [v.path, v.reason]), [["shapes/a.bin", "moved"], ["shapes/a.bin.moved", "deleted"]]);
    assert.ok(gone.every((v) => v.participant === mid), "the versions name the MeshAgent participant who replaced them");
    assert.match(await goRun("restore", "shapes/a.bin.moved"), /^restored shapes\/a\.bin\.moved from version /);
    await goRun("rm", "shapes/a.bin.moved");
    const versions = (await goRun("versions", "shapes/a.bin", "--json")).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(versions.map((v) => v.reason), ["moved", "overwritten"], "shapes/a.bin: moved away, and overwritten before");
    const after = await storageCalls(m, seen, "shapes", "shapes/a.bin", randomBytes(3000));
    assertStrictShapes(after.messages);
    assert.deepEqual(after.shapes, none.shapes, "every reply has the shape it has without a history");
    for (const [name, shapes] of Object.entries(before.shapes)) assert.ok(shapes.length > 0, `${name}: replies were seen`);

    // (b) The MeshAgent participant deletes a file; the Go participant
    // restores it.
    const original = randomBytes(100_000);
    await call(m.storage.upload("docs/report.bin", original), "upload");
    await rec.waitFor({ type: "file.updated", path: "docs/report.bin" });
    await call(m.storage.delete("docs/report.bin"), "delete");
    await rec.waitFor({ type: "file.deleted", path: "docs/report.bin" });
    assert.equal(await call(m.storage.exists("docs/report.bin"), "exists"), false);
    const from = rec.events.length;
    const restored = await goRun("restore", "docs/report.bin");
    assert.match(restored, new RegExp(`^restored docs/report\\.bin from version \\S+ \\(100000 bytes, deleted \\S+ by ${mid}\\)\\n$`));

    // (c) The MeshAgent participant hears of it once, and reads the
    // original bytes. A marker committed after the restore, told after
    // its event, shows that no second event is on its way.
    await rec.waitFor({ type: "file.updated", path: "docs/report.bin" });
    await call(m.storage.upload("marker", enc.encode("m")), "marker");
    await rec.waitFor({ type: "file.updated", path: "marker" });
    const told = rec.events.slice(from);
    const forReport = told.filter((e) => e.path === "docs/report.bin");
    assert.equal(forReport.length, 1, `one event for the restored file, got ${JSON.stringify(told)}`);
    assert.equal(forReport[0].type, "file.updated");
    assert.ok(forReport[0].participantId && forReport[0].participantId !== mid, "the Go participant restored it");
    for (const e of seen.events) {
      const want = e.type === "storage.file.moved" ? ["destination_path", "participant_id", "source_path"] : ["participant_id", "path"];
      assert.deepEqual(Object.keys(e.header).sort(), want, `${e.type}: exactly the keys of the protocol`);
    }
    assert.ok(seen.events.length >= told.length, "the tap saw the events");
    const got = await call(m.storage.download("docs/report.bin"), "download");
    assert.equal(got.data.length, original.length);
    assert.ok(Buffer.from(got.data).equals(original), "the restored file holds the original bytes");
    assert.equal((await call(m.storage.stat("docs/report.bin"), "stat")).size, original.length);
  });
});

// Resumable uploads (SPEC 9.6) with tus-js-client 4.3.1 against a real
// `roomstore serve` on a file:// store, beside the MeshAgent client 0.39.9
// in the same room: an upload cut twice mid-body by a loopback proxy
// (cutproxy.mjs) resumes from what the server kept, is invisible while it
// waits, and lands byte-exact with one file.updated; an abandoned upload
// is gone after --resumable-age; a token that may not write the path is
// refused at creation. Builds nothing: ROOMSTORE_BIN names the binary.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import * as tus from "tus-js-client";

import {
  require,
  call,
  connect,
  enc,
  freshRoom,
  readStream,
  recorder,
  regularFiles,
  run,
  startServer,
  until,
  withTimeout,
  SECRET,
  EVENT_TIMEOUT,
} from "./harness.mjs";
import { startCutProxy } from "./cutproxy.mjs";

const { ApiScope, ParticipantToken, StorageGrant, StoragePathGrant } = require("@meshagent/meshagent");

const UPLOAD_TIMEOUT = 120_000; // 64 MiB with two resumptions
const SIZE = 64 << 20;

// A client-side RoomServerException left unobserved at dispose() is
// expected (see roomstore.test.mjs); anything else fails the run.
const strayRejections = [];
process.on("unhandledRejection", (err) => strayRejections.push(err));
after(() => {
  const unexpected = strayRejections.filter((e) => e?.name !== "RoomServerException");
  assert.deepEqual(unexpected.map(String), [], "unexpected unhandled rejections");
});

// token mints a participant token with the client's own classes; paths,
// as [path, readOnly] pairs, narrow its storage grant.
async function token(room, name, paths) {
  const t = new ParticipantToken({ name });
  t.addRoomGrant(room);
  t.addRoleGrant("user");
  const storage = new StorageGrant({ paths: paths?.map(([path, readOnly]) => new StoragePathGrant({ path, readOnly })) });
  t.addApiGrant(paths ? new ApiScope({ storage }) : ApiScope.agentDefault());
  return await t.toJwt({ token: SECRET });
}

// upload runs a tus-js-client upload of data to path and resolves with
// the upload once it succeeds, or rejects with its error.
function upload(endpoint, tok, path, data, options = {}) {
  return new Promise((resolve, reject) => {
    const u = new tus.Upload(data, {
      endpoint,
      headers: { Authorization: `Bearer ${tok}` },
      metadata: { path },
      uploadSize: data.length,
      retryDelays: [0, 100, 200, 400],
      onError: reject,
      onSuccess: () => resolve(u),
      ...options,
    });
    options.started?.(u);
    u.start();
  });
}

const sha256 = (b) => createHash("sha256").update(b).digest("hex");

// head asks the server directly (not through the proxy) for an upload's
// offset.
async function head(url, tok) {
  const res = await withTimeout(fetch(url, { method: "HEAD", headers: { "Tus-Resumable": "1.0.0", Authorization: `Bearer ${tok}` } }), 15_000, "HEAD");
  return res;
}

describe("tus resumable uploads", () => {
  let srv;
  let dir;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "roomstore-tus-"));
    srv = await startServer(`file://${dir}/{room}`);
  });
  after(async () => {
    try {
      if (srv) assert.equal(await srv.stop(), 0, "roomstore serve exits 0 after SIGTERM:\n" + srv.logs.slice(-20).join("\n"));
    } finally {
      if (dir) await rm(dir, { recursive: true, force: true });
    }
  });

  test("64 MiB cut twice mid-body resumes, stays invisible while cut, lands byte-exact with one file.updated", async (t) => {
    const room = freshRoom("tus");
    const watcher = await connect(t, srv.addr, room, { name: "watcher" });
    const seen = recorder(watcher);
    const tok = await token(room, "uploader");
    const proxy = await startCutProxy({ target: srv.addr });
    t.after(() => proxy.close());
    proxy.holdAfterCut = true;

    const data = randomBytes(SIZE);
    const path = "videos/big.bin";
    let up;
    const done = upload(`${proxy.url}/tus/${encodeURIComponent(room)}/`, tok, path, data, { started: (u) => (up = u) });
    done.catch(() => {}); // awaited below

    for (const [i, cutAt] of [10 << 20, 17 << 20].entries()) {
      proxy.cutAfter(cutAt);
      assert.equal(await withTimeout(proxy.cut(), UPLOAD_TIMEOUT, `cut ${i + 1}`), i + 1);
      // Paused between cuts: the server has some bytes, nobody sees a file.
      assert.ok(up.url, "the upload was created before the cut");
      const url = up.url.replace(proxy.url, `http://${srv.addr}`);
      const res = await until(async () => {
        const r = await head(url, tok);
        return r.status === 200 && Number(r.headers.get("upload-offset")) > 0 ? r : null;
      }, EVENT_TIMEOUT, "the server to keep some bytes");
      assert.ok(Number(res.headers.get("upload-offset")) < SIZE, "not every byte arrived");
      assert.ok(new Date(res.headers.get("upload-expires")) > new Date(Date.now() - 1000), "Upload-Expires is a date ahead");
      assert.equal(await call(watcher.storage.exists(path), "exists while cut"), false);
      assert.equal(await call(watcher.storage.stat(path), "stat while cut"), null);
      const folders = await call(watcher.storage.list(""), "list while cut");
      assert.deepEqual(folders.map((e) => e.name), [], "nothing listed while the upload waits");
      proxy.release();
    }
    await withTimeout(done, UPLOAD_TIMEOUT, "the resumed upload");

    // It really resumed: two cuts, a HEAD for each resumption, and the
    // body sent in three PATCHes after one POST.
    assert.equal(proxy.cuts, 2);
    assert.equal(proxy.count("POST"), 1);
    assert.ok(proxy.count("HEAD") >= 2, `HEAD requests: ${proxy.count("HEAD")}`);
    assert.ok(proxy.count("PATCH") >= 3, `PATCH requests: ${proxy.count("PATCH")}`);

    const got = await withTimeout(readStream(await watcher.storage.downloadStream(path)), UPLOAD_TIMEOUT, "download");
    assert.equal(got.size, SIZE);
    assert.equal(got.sha256, sha256(data), "the downloaded file is byte-exact");

    await call(watcher.storage.upload("marker", enc.encode("m")), "marker");
    await seen.waitFor({ type: "file.updated", path: "marker" });
    const updates = seen.events.filter((e) => e.type === "file.updated" && e.path === path);
    assert.equal(updates.length, 1, `file.updated events of the upload: ${JSON.stringify(updates)}`);
  });

  test("an abandoned upload is gone after --resumable-age, with nothing visible", async (t) => {
    // A server of its own, whose uploads expire 2s after their last write.
    const srv = await startServer(`file://${dir}/{room}`, ["--resumable-age", "2s"]);
    t.after(async () => assert.equal(await srv.stop(), 0, "roomstore serve exits 0 after SIGTERM:\n" + srv.logs.slice(-20).join("\n")));
    const room = freshRoom("tus-gone");
    const watcher = await connect(t, srv.addr, room, { name: "watcher" });
    const tok = await token(room, "quitter");
    const proxy = await startCutProxy({ target: srv.addr });
    t.after(() => proxy.close());
    proxy.cutAfter(1 << 20);
    let up;
    await assert.rejects(
      withTimeout(upload(`${proxy.url}/tus/${encodeURIComponent(room)}/`, tok, "left.bin", randomBytes(4 << 20), { retryDelays: null, started: (u) => (up = u) }), UPLOAD_TIMEOUT, "the cut upload"),
      /tus: failed to upload chunk/,
    );
    assert.equal(proxy.cuts, 1);
    const url = up.url.replace(proxy.url, `http://${srv.addr}`);
    assert.equal((await head(url, tok)).status, 200, "the upload waits to be resumed");
    // Past --resumable-age (2s) without a write, it is gone.
    await until(async () => [404, 410].includes((await head(url, tok)).status), 15_000, "the upload to expire", 200);
    const staged = () => readdir(join(dir, room, ".roomstore", "uploads"), { recursive: true }).catch(() => []);
    assert.ok((await staged()).length > 0, "the upload's bytes wait in the store's reserved folder");
    const swept = await run(["sweep", "--store", `file://${dir}/${room}`, "--resumable-age", "2s"]);
    assert.equal(swept.code, 0, swept.stderr);
    assert.deepEqual(await staged(), [], `sweep removed the upload's bytes (${swept.stdout.trim()})`);
    assert.equal(await call(watcher.storage.exists("left.bin"), "exists"), false);
    assert.deepEqual((await call(watcher.storage.list(""), "list")).map((e) => e.name), []);
    assert.deepEqual(await regularFiles(join(dir, room)), [], "no file in the room's folder");
  });

  test("a token that may not write the path is refused at creation with 403", async (t) => {
    const room = freshRoom("tus-grant");
    await connect(t, srv.addr, room, { name: "owner" }); // creates the room
    const tok = await token(room, "inbox-only", [["inbox/", false]]);
    await assert.rejects(
      withTimeout(upload(`http://${srv.addr}/tus/${encodeURIComponent(room)}/`, tok, "private/x.bin", randomBytes(1000)), 15_000, "a refused upload"),
      (err) => {
        assert.equal(err.originalResponse?.getStatus(), 403, String(err));
        assert.match(err.originalResponse.getBody(), /private\/x\.bin/);
        assert.equal(err.originalResponse.getBody().trim().split("\n").length, 1, "a one-line refusal");
        return true;
      },
    );
    const ok = await withTimeout(upload(`http://${srv.addr}/tus/${encodeURIComponent(room)}/`, tok, "inbox/x.bin", randomBytes(1000)), 15_000, "an upload inside the grant");
    assert.ok(ok.url);
  });
});

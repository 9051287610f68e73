// The MeshAgent TypeScript client 0.39.9 connecting as the 0.43 and later
// clients do (MESHAGENT-PROTOCOL.md, "Client generations"): the token in
// an Authorization: Bearer header (Node, Python, Dart), or in the
// subprotocol meshagent-room.<jwt> (browsers), which the server echoes;
// the query carries only Python's ?v=, and permessage-deflate is offered
// (the ws library offers it by default). The client's own protocol is
// used unchanged over a channel that connects that way.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

import {
  require,
  CALL_TIMEOUT,
  call,
  close,
  dec,
  enc,
  freshRoom,
  mintToken,
  recorder,
  rejectsWithCode,
  startServer,
  withTimeout,
} from "./harness.mjs";

const { Protocol, ProtocolCloseException, ProtocolHandshakeException, RoomClient } = require("@meshagent/meshagent");
const WebSocket = require("ws");

// A client-side RoomServerException left unobserved at dispose() is
// expected (see roomstore.test.mjs); anything else fails the run.
const strayRejections = [];
process.on("unhandledRejection", (err) => strayRejections.push(err));
after(() => {
  const unexpected = strayRejections.filter((e) => e?.name !== "RoomServerException");
  assert.deepEqual(unexpected.map(String), [], "unexpected unhandled rejections");
});

// HeaderChannel is the client's WebSocket channel connecting as the 0.43
// and later clients do: no token in the URL; a header or a subprotocol
// instead. It has the channel's interface (start, sendData, dispose).
class HeaderChannel {
  constructor({ url, headers = {}, protocols = [] }) {
    this.url = url;
    this.headers = headers;
    this.protocols = protocols;
    this.ws = null;
  }

  start(onDataReceived, { onDone, onError }) {
    let finished = false;
    const finish = (err) => {
      if (finished) return;
      finished = true;
      if (err) onError?.(err);
      else onDone?.();
    };
    const ws = new WebSocket(this.url, this.protocols, { headers: this.headers, perMessageDeflate: true });
    this.ws = ws;
    this.opened = new Promise((resolve, reject) => {
      ws.on("open", resolve);
      ws.on("error", reject);
    });
    this.opened.catch(() => {});
    ws.on("message", (data) => onDataReceived(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)));
    ws.on("unexpected-response", (_req, res) => {
      finish(new ProtocolHandshakeException({ statusCode: res.statusCode, statusText: res.statusMessage }));
      ws.terminate();
    });
    ws.on("close", (code, reason) => finish(code === 1000 ? null : new ProtocolCloseException({ closeCode: code, reason: reason.toString() })));
    ws.on("error", (err) => finish(err));
  }

  async sendData(data) {
    await this.opened;
    this.ws.send(data);
  }

  dispose() {
    const ws = this.ws;
    this.ws = null;
    if (ws == null) return;
    if (ws.readyState === WebSocket.OPEN) ws.close(1000);
    else if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
  }
}

// HeaderProtocol is the client's protocol over a HeaderChannel, with the
// url and token the room client may ask its protocol for.
class HeaderProtocol extends Protocol {
  constructor({ url, token, channel }) {
    super({ channel });
    this._url = url;
    this._token = token;
  }
  get url() {
    return this._url;
  }
  get token() {
    return this._token;
  }
}

// connectAs joins room the way a 0.43+ client does: "bearer" (the header)
// or "subprotocol"; the client is disposed when the test ends. It
// returns the client and its channel.
async function connectAs(t, addr, room, how, { name = "alice", token } = {}) {
  token ??= await mintToken(room, { name });
  const url = `ws://${addr}/rooms/${encodeURIComponent(room)}?v=0.56.0`;
  const opts = how === "bearer" ? { headers: { Authorization: `Bearer ${token}` } } : how === "subprotocol" ? { protocols: [`meshagent-room.${token}`] } : {};
  const channel = new HeaderChannel({ url, ...opts });
  const client = new RoomClient({ protocolFactory: () => new HeaderProtocol({ url, token, channel }), reconnectTimeout: 0 });
  client.ready.catch(() => {}); // start() reports a failure; ready rejects unobserved
  t.after(() => close(client));
  await withTimeout(client.start(), CALL_TIMEOUT, `joining room ${room} by ${how}`);
  return { client, channel };
}

describe("roomstore serve and clients that connect as 0.43 and later do", () => {
  let srv;
  before(async () => {
    srv = await startServer("mem://");
  });
  after(async () => {
    if (srv) assert.equal(await srv.stop(), 0, "roomstore serve exits 0 after SIGTERM:\n" + srv.logs.slice(-20).join("\n"));
  });

  test("a Bearer participant and a subprotocol participant share a room: every call, and each other's events", async (t) => {
    const room = freshRoom("gen");
    const { client: a, channel: ca } = await connectAs(t, srv.addr, room, "bearer", { name: "ann" });
    const { client: b, channel: cb } = await connectAs(t, srv.addr, room, "subprotocol", { name: "bob" });
    assert.ok(a.localParticipant?.id && b.localParticipant?.id, "both got a participant id");
    assert.equal(cb.ws.protocol, cb.protocols[0], "the subprotocol is echoed");
    assert.equal(ca.ws.protocol, "", "no subprotocol where none was offered");
    // The server declines permessage-deflate (see roomserver's docs): the
    // offer costs the client nothing but the offer.
    assert.equal(ca.ws.extensions, "", "permessage-deflate declined");

    const seenByB = recorder(b);
    const body = enc.encode("hello from a 0.43-style client\n" + randomBytes(4096).toString("hex"));
    await call(a.storage.upload("gen/a.txt", body), "upload by the Bearer participant");
    await seenByB.waitFor({ type: "file.updated", path: "gen/a.txt", participantId: a.localParticipant.id });
    assert.equal(await call(b.storage.exists("gen/a.txt"), "exists"), true);
    const f = await call(b.storage.download("gen/a.txt"), "download by the subprotocol participant");
    assert.equal(dec.decode(f.data), dec.decode(body));
    const listed = await call(b.storage.list("gen"), "list");
    assert.deepEqual(listed.map((e) => [e.name, e.isFolder]), [["a.txt", false]]);
    const url = await call(a.storage.downloadUrl("gen/a.txt"), "download_url");
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), dec.decode(body));
    await call(b.storage.move("gen/a.txt", "gen/b.txt"), "move");
    const seenByA = recorder(a);
    await call(b.storage.delete("gen/b.txt"), "delete");
    await seenByA.waitFor({ type: "file.deleted", path: "gen/b.txt", participantId: b.localParticipant.id });
    await rejectsWithCode(a.storage.download("gen/b.txt"), 404, "download of what was deleted");
  });

  test("without a token in the header, the subprotocol or the query, the upgrade is refused with 403", async (t) => {
    const room = freshRoom("gen-none");
    await assert.rejects(connectAs(t, srv.addr, room, "none"), (err) => {
      assert.match(String(err), /status 403\b/);
      return true;
    });
    const token = await mintToken(room, { secret: "a wrong secret of 32 bytes or more...." });
    await assert.rejects(connectAs(t, srv.addr, room, "bearer", { token }), (err) => {
      assert.match(String(err), /status 403\b/);
      return true;
    });
  });
});

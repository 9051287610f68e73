// The room protocol as the file browser speaks it: MeshAgent's framing
// and storage toolkit, with roomstore's extensions asked for
// (roomstore_extensions=1: history, overflow, resume). One Room is one
// participant; it reconnects with backoff when its connection drops.

const enc = new TextEncoder();
const dec = new TextDecoder();

// RoomError is a refused call: code is the protocol's HTTP-like code.
export class RoomError extends Error {
  constructor(message, code) {
    super(message);
    this.name = "RoomError";
    this.code = code;
  }
}

// pack builds a message's data: u64 length, the JSON, the payload.
function pack(json, payload) {
  const j = enc.encode(JSON.stringify(json));
  const p = payload ?? new Uint8Array(0);
  const out = new Uint8Array(8 + j.length + p.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, Math.floor(j.length / 2 ** 32));
  dv.setUint32(4, j.length >>> 0);
  out.set(j, 8);
  out.set(p, 8 + j.length);
  return out;
}

// frames splits one message into its header frame and data frames.
function frames(id, type, data) {
  const t = enc.encode(type);
  const slice = 64 * 1024;
  const n = Math.max(1, Math.ceil(data.length / slice));
  const hi = Math.floor(id / 2 ** 32);
  const lo = id >>> 0;
  const header = new Uint8Array(16 + t.length);
  const hv = new DataView(header.buffer);
  hv.setUint32(0, hi);
  hv.setUint32(4, lo);
  hv.setUint32(8, 0);
  hv.setUint32(12, n);
  header.set(t, 16);
  const out = [header];
  for (let k = 1; k <= n; k++) {
    const part = data.subarray((k - 1) * slice, k * slice);
    const f = new Uint8Array(12 + part.length);
    const fv = new DataView(f.buffer);
    fv.setUint32(0, hi);
    fv.setUint32(4, lo);
    fv.setUint32(8, k);
    f.set(part, 12);
    out.push(f);
  }
  return out;
}

// Assembler reassembles frames into messages {id, type, json, payload}.
class Assembler {
  constructor() {
    this.cur = null;
  }
  add(buf) {
    const f = new Uint8Array(buf);
    if (f.length < 12) throw new Error("a frame too short");
    const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
    const id = dv.getUint32(0) * 2 ** 32 + dv.getUint32(4);
    const k = dv.getUint32(8);
    if (k === 0) {
      if (f.length < 16) throw new Error("a header frame too short");
      this.cur = { id, type: dec.decode(f.subarray(16)), total: dv.getUint32(12), parts: [], size: 0 };
      if (this.cur.total === 0) return this.finish();
      return null;
    }
    const c = this.cur;
    if (!c || c.id !== id || k !== c.parts.length + 1) throw new Error("a data frame out of order");
    c.parts.push(f.subarray(12));
    c.size += f.length - 12;
    return k === c.total ? this.finish() : null;
  }
  finish() {
    const c = this.cur;
    this.cur = null;
    const data = new Uint8Array(c.size);
    let at = 0;
    for (const p of c.parts) {
      data.set(p, at);
      at += p.length;
    }
    if (data.length < 8) return { id: c.id, type: c.type, json: null, payload: data };
    const dv = new DataView(data.buffer);
    const n = dv.getUint32(0) * 2 ** 32 + dv.getUint32(4);
    const json = JSON.parse(dec.decode(data.subarray(8, 8 + n)));
    return { id: c.id, type: c.type, json, payload: data.subarray(8 + n) };
  }
}

const CALL_TIMEOUT = 30_000;

// Room is a connection to one room that reconnects on its own. Listeners:
// onstate(state, detail) with "connecting", "open", "closed" (for good:
// a refused token); onevent(ev) with {type: "updated"|"deleted"|"moved"|
// "overflow", path, source, destination, participant, name}; onopen()
// after each (re)connection, when the page should list again.
export class Room {
  constructor(url, token) {
    this.url = url;
    this.token = token;
    this.nextID = 0;
    this.pending = new Map();
    this.ws = null;
    this.participantID = "";
    this.position = "";
    this.attempt = 0;
    this.stopped = false;
    this.joined = false; // greeted once: a later failure is a lost connection
    this.onstate = () => {};
    this.onevent = () => {};
    this.onopen = () => {};
  }

  start() {
    this.stopped = false;
    this.dial();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retry);
    if (this.ws) this.ws.close(1000);
  }

  dial() {
    const q = new URLSearchParams({ roomstore_extensions: "1" });
    if (this.position) q.set("roomstore_after", this.position);
    this.onstate("connecting");
    let ws;
    try {
      ws = new WebSocket(`${this.url}?${q}`, ["meshagent-room." + this.token]);
    } catch (err) {
      this.onstate("closed", err.message);
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    const asm = new Assembler();
    let greeted = { ready: false, connected: false };
    ws.onmessage = (e) => {
      if (typeof e.data === "string") return;
      let m;
      try {
        m = asm.add(e.data);
      } catch (err) {
        ws.close(1002, "bad frame");
        return;
      }
      if (!m) return;
      this.dispatch(m, greeted);
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      for (const [, p] of this.pending) p.reject(new RoomError("the connection to the room was lost", 0));
      this.pending.clear();
      if (this.stopped) return;
      if (e.code === 1008) {
        this.onstate("closed", e.reason || "the server ended the session");
        return;
      }
      const delay = Math.min(30_000, 500 * 2 ** Math.min(this.attempt, 6)) * (0.75 + Math.random() / 2);
      this.attempt++;
      // A refused upgrade (403: a bad or expired token; 404: a room a
      // reader may not create) closes before any greeting, as a server
      // that cannot be reached does: the page cannot tell them apart.
      const why = this.joined ? "the connection to the room was lost" : "cannot join the room (is the token valid and the server up?)";
      this.onstate("connecting", `${why}; retrying in ${Math.max(1, Math.round(delay / 1000))} s`);
      this.retry = setTimeout(() => this.dial(), delay);
    };
  }

  dispatch(m, greeted) {
    switch (m.type) {
      case "__response__": {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        p.resolve(m);
        return;
      }
      case "room_ready":
        greeted.ready = true;
        if (m.json?.position && !this.position) this.position = m.json.position;
        break;
      case "connected":
        greeted.connected = true;
        this.participantID = m.json?.participantId ?? "";
        break;
      case "storage.file.updated":
      case "storage.file.deleted":
      case "storage.file.moved":
      case "storage.events.overflow": {
        const j = m.json ?? {};
        if (j.position) this.position = j.position;
        const type = m.type.split(".").pop();
        this.onevent({
          type,
          path: j.path,
          source: j.source_path,
          destination: j.destination_path,
          participant: j.participant_id,
          name: j.participant_name,
        });
        return;
      }
      default:
        return;
    }
    if (greeted.ready && greeted.connected) {
      this.attempt = 0;
      this.joined = true;
      this.onstate("open");
      this.onopen();
    }
  }

  send(type, json) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new RoomError("not connected to the room", 0));
    }
    const id = this.nextID++;
    const p = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RoomError(`no answer from the room in ${CALL_TIMEOUT / 1000} s`, 0));
      }, CALL_TIMEOUT);
      this.pending.set(id, {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
    });
    // The frames of one message go out back to back: ws.send queues them
    // in order.
    for (const f of frames(id, type, pack(json))) ws.send(f);
    return p;
  }

  // call invokes a tool of the storage toolkit and returns its JSON reply.
  async call(tool, args) {
    const m = await this.send("room.invoke_tool", { toolkit: "storage", tool, arguments: { type: "json", json: args } });
    const c = m.json ?? {};
    if (c.type === "error") throw new RoomError(c.text || "refused", c.code ?? 0);
    return c.type === "json" ? c.json : {};
  }

  list(path) {
    return this.call("list", { path }).then((r) => r.files ?? []);
  }
  remove(path, recursive) {
    return this.call("delete", { path, recursive });
  }
  move(source, destination) {
    return this.call("move", { source_path: source, destination_path: destination, overwrite: false });
  }
  downloadURL(path) {
    return this.call("download_url", { path, download: true }).then((r) => r.url);
  }
  versions(path) {
    return this.call("versions", { path }).then((r) => r.versions ?? []);
  }
  restore(path, version) {
    return this.call("restore", { path, version });
  }
}

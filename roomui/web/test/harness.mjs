// What the browser tests share: a roomstore serve subprocess, tokens
// minted with node:crypto (HS256, MeshAgent's grant shape), Debian's
// chromium driven by playwright-core, bounded waits and screenshots.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));

export const BIN = process.env.ROOMSTORE_BIN;
if (!BIN) throw new Error("set ROOMSTORE_BIN to the roomstore binary (make test-ui builds it)");
export const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
export const ARTIFACTS = resolve(process.env.UI_ARTIFACTS ?? join(here, "..", "test-artifacts"));
export const SECRET = "ui-test-secret-" + randomBytes(16).toString("hex");

export const START_TIMEOUT = 20_000; // the server's "listening" line
export const STEP_TIMEOUT = 15_000; // one thing a page should show
export const STOP_TIMEOUT = 20_000; // SIGTERM to exit

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

// ---- tokens ----

const b64url = (b) => Buffer.from(b).toString("base64url");

// mintToken makes the token MeshAgent's ParticipantToken makes for name
// in room, with a storage grant: paths omitted is every path, read and
// write; else [{path, read_only}].
export function mintToken(room, { name = "alice", paths, secret = SECRET, expiresIn } = {}) {
  const storage = paths ? { paths: paths.map((p) => (p.read_only ? { path: p.path, read_only: true } : { path: p.path })) } : {};
  const claims = {
    name,
    grants: [{ name: "room", scope: room }, { name: "role", scope: "user" }, { name: "api", scope: { storage } }],
    version: "0.39.9",
    iat: Math.floor(Date.now() / 1000),
  };
  if (expiresIn !== undefined) claims.exp = Math.floor(Date.now() / 1000) + expiresIn;
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

// ---- the server ----

const children = new Set();
process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

// startServer runs `roomstore serve` on a free port with a fresh file://
// store and resolves once it logs its address.
export async function startServer(extraArgs = []) {
  const dir = await mkdtemp(join(tmpdir(), "roomui-test-"));
  const args = ["serve", "--listen", "127.0.0.1:0", "--store", `file://${dir}/{room}`, ...extraArgs];
  const child = spawn(BIN, args, { env: { ...process.env, ROOMSTORE_TOKEN_SECRET: SECRET }, stdio: ["ignore", "inherit", "pipe"] });
  children.add(child);
  const logs = [];
  const exited = new Promise((res) => child.on("exit", (code, signal) => (children.delete(child), res(code ?? signal))));
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
    dir,
    logs,
    addr: null,
    async stop() {
      try {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill("SIGTERM");
          try {
            return await withTimeout(exited, STOP_TIMEOUT, "the server's exit after SIGTERM");
          } catch (err) {
            child.kill("SIGKILL");
            throw err;
          }
        }
        return await exited;
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
  try {
    const line = await until(() => {
      if (child.exitCode !== null) throw new Error(`roomstore serve exited early (${child.exitCode}):\n${logs.join("\n")}`);
      return logs.find((l) => /msg=listening /.test(l));
    }, START_TIMEOUT, "roomstore serve to listen");
    srv.addr = /\baddr=(\S+)/.exec(line)[1];
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  return srv;
}

// ---- the browser ----

export const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"];

// launch starts chromium with a fresh profile, failing on any request
// to another origin than the server's.
export async function launch() {
  if (!existsSync(CHROMIUM)) throw new Error(`no chromium at ${CHROMIUM} (make test-ui installs it)`);
  const profile = await mkdtemp(join(tmpdir(), "roomui-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    acceptDownloads: true,
    viewport: { width: 1200, height: 800 },
  });
  context.setDefaultTimeout(STEP_TIMEOUT);
  context.setDefaultNavigationTimeout(STEP_TIMEOUT);
  return {
    context,
    async close() {
      await withTimeout(context.close(), STOP_TIMEOUT, "closing chromium").catch(() => {});
      await rm(profile, { recursive: true, force: true });
    },
  };
}

// watchPage records what must not happen on a page: a console error, an
// uncaught exception, a CSP violation, a request to another origin.
export function watchPage(page, origin) {
  const problems = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`exception: ${e.message}`));
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (u.protocol === "data:" || u.protocol === "blob:") return;
    if (u.host !== new URL(origin).host) problems.push(`request to another origin: ${r.url()}`);
  });
  return problems;
}

let shot = 0;
export const shots = [];

// screenshot saves the page as ARTIFACTS/NN-name.png.
export async function screenshot(page, name) {
  if (shot === 0) await rm(ARTIFACTS, { recursive: true, force: true }); // this run's alone
  await mkdir(ARTIFACTS, { recursive: true });
  const file = join(ARTIFACTS, `${String(++shot).padStart(2, "0")}-${name}.png`);
  await withTimeout(page.screenshot({ path: file, fullPage: true }), STEP_TIMEOUT, `screenshot ${name}`);
  shots.push(file);
  return file;
}

// row is the locator of the row of path in the file table.
export const row = (page, path) => page.locator(`#rows tr[data-path="${path.replace(/"/g, '\\"')}"]`);

// waitRow waits until the row of path is there (or, with gone, is not).
export async function waitRow(page, path, { gone = false, what } = {}) {
  const loc = row(page, path);
  await loc.waitFor({ state: gone ? "detached" : "visible", timeout: STEP_TIMEOUT }).catch((err) => {
    throw new Error(`${what ?? path}: the row ${gone ? "stayed" : "never came"} (${err.message.split("\n")[0]})`);
  });
  return loc;
}

// dropFiles drops files ([{name, text} or {name, size, seed}]) onto the
// page as a user dragging them from the desktop would: dragenter,
// dragover, drop with a DataTransfer that holds them.
export async function dropFiles(page, files) {
  const dt = await page.evaluateHandle((files) => {
    const dt = new DataTransfer();
    for (const f of files) {
      let bytes;
      if (f.text !== undefined) bytes = new TextEncoder().encode(f.text);
      else bytes = patternBytes(f.size, f.seed);
      dt.items.add(new File([bytes], f.name, { type: f.type ?? "application/octet-stream", lastModified: 1700000000000 }));
    }
    return dt;
    // patternBytes must match pattern() below.
    function patternBytes(n, seed) {
      const out = new Uint8Array(n);
      let x = seed >>> 0 || 1;
      for (let i = 0; i < n; i += 4) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        x >>>= 0;
        out[i] = x & 255;
        if (i + 1 < n) out[i + 1] = (x >>> 8) & 255;
        if (i + 2 < n) out[i + 2] = (x >>> 16) & 255;
        if (i + 3 < n) out[i + 3] = x >>> 24;
      }
      return out;
    }
  }, files);
  const target = page.locator("#drop");
  await target.dispatchEvent("dragenter", { dataTransfer: dt });
  await target.dispatchEvent("dragover", { dataTransfer: dt });
  await target.dispatchEvent("drop", { dataTransfer: dt });
  await dt.dispose();
}

// pattern is the bytes dropFiles makes for {size, seed}.
export function pattern(n, seed) {
  const out = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 255;
    if (i + 1 < n) out[i + 1] = (x >>> 8) & 255;
    if (i + 2 < n) out[i + 2] = (x >>> 16) & 255;
    if (i + 3 < n) out[i + 3] = x >>> 24;
  }
  return out;
}

export { assert };

// ---- the cutting proxy ----

// cutproxy.mjs (dependency-free) is the proxy the tus tests of the
// roomstore command cut uploads with.
const CUTPROXY = new URL("../../../cmd/roomstore/testdata/meshagent/cutproxy.mjs", import.meta.url);

// startFront serves the page, its assets, its downloads and its tus
// requests through the cutting proxy, and its WebSocket straight to the
// server: the proxy reads every request as HTTP (it counts bodies to cut
// them), which a WebSocket's frames are not. The first request of each
// connection decides where the connection goes.
export async function startFront(target) {
  const { startCutProxy } = await import(CUTPROXY.href);
  const net = await import("node:net");
  const proxy = await startCutProxy({ target });
  const via = new URL(proxy.url);
  const [th, tp] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
  const sockets = new Set();
  const websockets = new Set();
  let refuseWebSockets = false;
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => {});
    let head = Buffer.alloc(0);
    const first = (d) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0 && head.length < 64 << 10) return;
      client.off("data", first);
      client.pause();
      const ws = /\r\nupgrade:\s*websocket/i.test(head.subarray(0, end).toString("latin1"));
      if (ws && refuseWebSockets) {
        client.destroy();
        return;
      }
      if (ws) {
        websockets.add(client);
        client.on("close", () => websockets.delete(client));
      }
      const upstream = ws ? net.connect(tp, th) : net.connect(Number(via.port), via.hostname);
      sockets.add(upstream);
      upstream.on("close", () => (sockets.delete(upstream), client.destroy()));
      upstream.on("error", () => client.destroy());
      client.on("close", () => upstream.destroy());
      upstream.write(head);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    };
    client.on("data", first);
  });
  await new Promise((res, rej) => (server.once("error", rej), server.listen(0, "127.0.0.1", res)));
  return {
    proxy,
    origin: `http://127.0.0.1:${server.address().port}`,
    // dropWebSockets cuts every WebSocket, as a network drop would, and
    // with refuse, every new one until allowWebSockets.
    dropWebSockets({ refuse = false } = {}) {
      refuseWebSockets = refuse;
      const n = websockets.size;
      for (const s of websockets) s.destroy();
      return n;
    },
    allowWebSockets() {
      refuseWebSockets = false;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((res) => server.close(() => res()));
      await proxy.close();
    },
  };
}

// cutproxy: a loopback HTTP/1.1 proxy that drops connections mid-body, as
// a network would, for the tests of resumable uploads. Dependency-free
// (node:net only), so that any test may import it by relative path.
//
//   import { startCutProxy } from "./cutproxy.mjs";
//   const proxy = await startCutProxy({ target: "127.0.0.1:8080" });
//   proxy.url                 // "http://127.0.0.1:PORT", to use instead of the target's
//   proxy.cutAfter(n)         // arm a cut: after n more request-body bytes
//                             // (counted across requests), the connection
//                             // that carries the nth is destroyed, both ways
//   proxy.holdAfterCut = true // (default false) after each cut, hold new
//                             // connections unanswered until release()
//   await proxy.cut()         // resolves at the next cut (a deadline is the caller's)
//   proxy.release()           // let held connections through
//   proxy.cuts                // cuts done
//   proxy.requests            // [{ method, path }] of every request seen, in order
//   proxy.count("HEAD")       // requests seen with that method
//   await proxy.close()       // stop listening and destroy every connection
//
// A request's body is counted by its Content-Length (tus requests carry
// one); a chunked body is passed through uncounted. Bytes from the target
// go back unchanged.
import net from "node:net";

export async function startCutProxy({ target, host = "127.0.0.1" }) {
  const [targetHost, targetPort] = splitHostPort(target);
  const sockets = new Set();
  const held = [];
  let armed = null; // body bytes left before the cut, or null
  let cutWaiters = [];
  let holding = false;

  const proxy = {
    url: "",
    cuts: 0,
    requests: [],
    holdAfterCut: false,
    cutAfter(n) {
      if (!(n >= 0)) throw new Error(`cutAfter(${n}): want a count of bytes`);
      armed = n;
    },
    cut() {
      return new Promise((resolve) => cutWaiters.push(resolve));
    },
    release() {
      holding = false;
      for (const start of held.splice(0)) start();
    },
    count(method) {
      return proxy.requests.filter((r) => r.method === method).length;
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };

  const server = net.createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => {});
    client.pause();
    const start = () => pipe(client);
    if (holding) held.push(start);
    else start();
  });

  function pipe(client) {
    if (client.destroyed) return;
    const upstream = net.connect(targetPort, targetHost);
    sockets.add(upstream);
    upstream.on("close", () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
    upstream.on("data", (d) => client.write(d));
    // The request stream: heads parsed, bodies counted.
    let head = Buffer.alloc(0);
    let body = 0; // bytes of the current body still to come
    let cutting = false; // past the cut: nothing more goes through
    client.on("data", (d) => {
      while (d.length > 0 && !client.destroyed && !cutting) {
        if (body === 0) {
          head = Buffer.concat([head, d]);
          const end = head.indexOf("\r\n\r\n");
          if (end < 0) return;
          const text = head.subarray(0, end).toString("latin1");
          const rest = head.subarray(end + 4);
          upstream.write(head.subarray(0, end + 4));
          head = Buffer.alloc(0);
          const [line, ...fields] = text.split("\r\n");
          const [method, path] = line.split(" ");
          proxy.requests.push({ method, path });
          const cl = fields.find((f) => /^content-length:/i.test(f));
          body = cl ? Number(cl.split(":")[1].trim()) : 0;
          d = rest;
          continue;
        }
        const n = Math.min(body, d.length);
        if (armed !== null && armed <= n) {
          // The cut: what comes before it goes through, then the
          // connection is gone both ways.
          cutting = true;
          client.pause();
          upstream.write(d.subarray(0, armed), () => cutNow(client, upstream));
          armed = null;
          return;
        }
        upstream.write(d.subarray(0, n));
        if (armed !== null) armed -= n;
        body -= n;
        d = d.subarray(n);
      }
    });
    client.resume();
  }

  function cutNow(client, upstream) {
    client.pause();
    proxy.cuts++;
    if (proxy.holdAfterCut) holding = true;
    // Destroyed, not ended: the server sees a body that stops short.
    setImmediate(() => {
      upstream.destroy();
      client.destroy();
      const waiters = cutWaiters;
      cutWaiters = [];
      for (const w of waiters) w(proxy.cuts);
    });
  }

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, resolve);
  });
  proxy.url = `http://${host}:${server.address().port}`;
  return proxy;
}

function splitHostPort(s) {
  const i = s.lastIndexOf(":");
  if (i < 0) throw new Error(`target ${s}: want HOST:PORT`);
  return [s.slice(0, i), Number(s.slice(i + 1))];
}

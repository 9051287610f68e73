// The page's reading of a token's storage grant (src/grants.js) decides
// as roomserver's StorageGrant does (MESHAGENT-PROTOCOL.md, Grants).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Access, decodePayload } from "../src/grants.js";

const jwt = (claims) => `e30.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.sig`;
const api = (storage) => ({ name: "n", grants: [{ name: "room", scope: "r" }, { name: "api", scope: storage === undefined ? {} : { storage } }] });

test("decodePayload reads base64url JSON claims, and nothing else", () => {
  assert.deepEqual(decodePayload(jwt({ name: "é~?>" })), { name: "é~?>" });
  for (const bad of ["", "a.b", "a.!!!.c", "a.bm90IGpzb24.c", "a.b.c.d"]) assert.equal(decodePayload(bad), null, bad);
});

test("no paths: every path, read and write", () => {
  const a = new Access(decodePayload(jwt(api({}))));
  assert.ok(a.canRead("x/y") && a.canWrite("x/y") && a.canWriteIn("") && !a.writesNothing);
});

test("an api grant without storage, or no api grant, denies storage", () => {
  for (const claims of [api(undefined), { name: "n", grants: [{ name: "room", scope: "r" }] }]) {
    const a = new Access(claims);
    assert.ok(!a.canRead("a") && !a.canWrite("a") && !a.canWriteIn("") && a.writesNothing);
  }
  const old = new Access({ name: "n", version: "0.3.5", grants: [{ name: "room", scope: "r" }] });
  assert.ok(old.canRead("a") && old.canWrite("a"), "a token older than grants may use storage");
});

test("paths: read by any prefix, write by the first prefix that matches", () => {
  const a = new Access(api({ paths: [{ path: "shared/inbox/" }, { path: "shared/", read_only: true }, { path: "/notes" }] }));
  const cases = [
    // path, read, write
    ["shared/inbox/a.txt", true, true],
    ["shared/b.txt", true, false],
    ["notes.md", true, true], // a leading slash is dropped; plain string prefixes
    ["notesX/y", true, true],
    ["private/s.txt", false, false],
  ];
  for (const [p, r, w] of cases) {
    assert.equal(a.canRead(p), r, `read ${p}`);
    assert.equal(a.canWrite(p), w, `write ${p}`);
  }
  assert.equal(a.canWriteIn(""), true, "notes* lies directly in the top");
  assert.equal(a.canWriteIn("shared"), false, "shared/ is read-only for its own files");
  assert.equal(a.canWriteIn("shared/inbox"), true);
  assert.equal(a.canWriteIn("private"), false);
  const ro = new Access(api({ paths: [{ path: "", readOnly: true }] }));
  assert.ok(ro.canRead("a") && !ro.canWrite("a") && ro.writesNothing, "readOnly, the TypeScript spelling, counts too");
});

// What a token's MeshAgent storage grant lets its participant do, read
// from the token's payload as roomserver's HS256 verifier reads it
// (MESHAGENT-PROTOCOL.md, Grants). The page uses it only to hide what the
// participant cannot do: the server decides every call.

// decodePayload returns a JWT's claims, or null when it is no JWT.
export function decodePayload(token) {
  const parts = String(token).split(".");
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

// predatesGrants: tokens of clients 0.3.5 and older carry no api grant
// and may use storage.
function predatesGrants(v) {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(String(v ?? ""));
  if (!m) return false;
  const n = m.slice(1).map(Number);
  const limit = [0, 3, 5];
  for (let i = 0; i < 3; i++) if (n[i] !== limit[i]) return n[i] < limit[i];
  return true;
}

// Access is a participant's storage grant: paths null means every path.
export class Access {
  constructor(claims) {
    this.none = false;
    this.paths = null;
    const grants = Array.isArray(claims?.grants) ? claims.grants : null;
    const api = grants?.find((g) => g?.name === "api");
    if (!api) {
      // A token the page cannot read is left to the server.
      this.none = grants !== null && !predatesGrants(claims?.version);
      return;
    }
    const storage = api.scope?.storage;
    if (!storage || typeof storage !== "object") {
      this.none = true;
      return;
    }
    if (Array.isArray(storage.paths)) {
      this.paths = storage.paths
        .filter((p) => typeof p?.path === "string")
        .map((p) => ({ prefix: p.path.replace(/^\//, ""), readOnly: Boolean(p.read_only ?? p.readOnly) }));
    }
  }

  canRead(path) {
    if (this.none) return false;
    if (!this.paths) return true;
    return this.paths.some((p) => path.startsWith(p.prefix));
  }

  canWrite(path) {
    if (this.none) return false;
    if (!this.paths) return true;
    const p = this.paths.find((p) => path.startsWith(p.prefix));
    return Boolean(p && !p.readOnly);
  }

  // canWriteIn reports whether some file directly in folder may be
  // written: the entry that decides for every name there, else a
  // writable entry for some of the names there (a prefix of a name in
  // it; one naming a deeper folder does not count).
  canWriteIn(folder) {
    if (this.none) return false;
    if (!this.paths) return true;
    const dir = folder ? folder + "/" : "";
    for (const p of this.paths) {
      if (dir.startsWith(p.prefix)) return !p.readOnly;
      if (p.prefix.startsWith(dir) && !p.prefix.slice(dir.length).includes("/") && !p.readOnly) return true;
    }
    return false;
  }

  // writesNothing: the participant may write no path at all.
  get writesNothing() {
    return this.none || (this.paths !== null && this.paths.every((p) => p.readOnly));
  }
}

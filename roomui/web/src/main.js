// roomstore's file browser: the sign-in form (/) and a room's files
// (/ui/rooms/{room}#token=JWT). See package roomui for what the server
// serves and docs/ui.md for what the page does.
import { Access, decodePayload } from "./grants.js";
import { Room, RoomError } from "./room.js";
import { describe, startUpload } from "./upload.js";

const $ = (id) => document.getElementById(id);

// el builds an element: el("button", {class: "x", onclick}, "text", child).
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

// validRoom mirrors roomserver.ValidRoom.
function validRoom(name) {
  if (!name || new TextEncoder().encode(name).length > 255 || name.startsWith(".")) return false;
  return ![...name].some((ch) => {
    const c = ch.codePointAt(0);
    return c < 0x20 || c === 0x7f || ch === "/" || ch === "\\" || (c >= 0x80 && c < 0xa0);
  });
}

const tokenKey = (room) => "roomstore.token." + room;

// ---- sign in ----

function signIn() {
  const form = $("signin");
  const roomIn = $("signin-room");
  const tokenIn = $("signin-token");
  const err = $("signin-error");
  roomIn.value = new URLSearchParams(location.search).get("room") ?? sessionStorage.getItem("roomstore.lastRoom") ?? "";
  (roomIn.value ? tokenIn : roomIn).focus();
  form.addEventListener("submit", (e) => {
    // The token goes into the fragment, which no browser sends to the
    // server: never into a query.
    e.preventDefault();
    const room = roomIn.value.trim();
    const token = tokenIn.value.trim();
    let msg = "";
    if (!validRoom(room)) msg = "Enter a room name: no '/', no leading '.'.";
    else if (!decodePayload(token)) msg = "Paste a participant token (a JWT: three parts separated by dots).";
    err.textContent = msg;
    err.hidden = !msg;
    if (msg) return;
    sessionStorage.setItem("roomstore.lastRoom", room);
    location.assign(`/ui/rooms/${encodeURIComponent(room)}#token=${encodeURIComponent(token)}`);
  });
}

// ---- formatting ----

function size(n) {
  if (n === null || n === undefined) return "";
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${n} ${n === 1 ? "byte" : "bytes"}`;
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

const when = (s) => {
  if (!s) return "";
  const d = new Date(s);
  if (isNaN(d) || d.getTime() <= 0) return "";
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
};

const join = (folder, name) => (folder ? folder + "/" + name : name);
const parent = (p) => (p.includes("/") ? p.slice(0, p.lastIndexOf("/")) : "");
const base = (p) => p.slice(p.lastIndexOf("/") + 1);

// ---- the room page ----

class App {
  constructor() {
    const b = document.body.dataset;
    this.roomsPath = b.rooms;
    this.tusPath = b.tus;
    this.room = decodeURIComponent(location.pathname.slice("/ui/rooms/".length));
    this.folder = this.folderFromHash();
    this.entries = [];
    this.listing = 0; // the number of the latest list call
    this.uploads = new Map();
    this.versionsOf = null; // the path whose versions the dialog shows
  }

  start() {
    let token = "";
    const h = location.hash;
    if (h.startsWith("#token=")) {
      // Out of the address bar (and so out of bookmarks, history and
      // screenshots) at once; kept for this tab's reloads.
      try {
        token = decodeURIComponent(h.slice("#token=".length));
      } catch {
        token = ""; // a malformed escape: no token
      }
      sessionStorage.setItem(tokenKey(this.room), token);
      history.replaceState(null, "", location.pathname + location.search);
      this.folder = "";
    } else {
      token = sessionStorage.getItem(tokenKey(this.room)) ?? "";
    }
    $("room-name").textContent = this.room;
    document.title = `${this.room} · ${document.body.dataset.title}`;
    if (!token) {
      this.fail("No token for this room in this tab: sign in again.", true);
      return;
    }
    this.token = token;
    const claims = decodePayload(token) ?? {};
    this.access = new Access(claims);
    $("who").textContent = typeof claims.name === "string" ? claims.name : "";
    this.bind();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.conn = new Room(`${scheme}//${location.host}${this.roomsPath}${encodeURIComponent(this.room)}`, token);
    this.conn.onstate = (s, detail) => this.connState(s, detail);
    this.conn.onopen = () => this.list();
    this.conn.onevent = (e) => this.event(e);
    this.render();
    this.conn.start();
  }

  folderFromHash() {
    const h = location.hash;
    if (!h.startsWith("#/")) return "";
    try {
      return decodeURIComponent(h.slice(2)).replace(/^\/+|\/+$/g, "");
    } catch {
      return "";
    }
  }

  bind() {
    window.addEventListener("hashchange", () => {
      if (location.hash.startsWith("#token=")) {
        // A new token pasted into this tab's address bar: start over with it.
        location.reload();
        return;
      }
      this.folder = this.folderFromHash();
      this.entries = [];
      this.loaded = false;
      this.render();
      this.list();
    });
    $("upload-input").addEventListener("change", (e) => {
      const files = [...e.target.files];
      e.target.value = "";
      this.upload(files);
    });
    $("new-folder").addEventListener("click", () => this.newFolder());
    $("refresh").addEventListener("click", () => this.list(true));
    const drop = document.body;
    let depth = 0;
    const hasFiles = (e) => [...(e.dataTransfer?.types ?? [])].includes("Files");
    drop.addEventListener("dragenter", (e) => {
      if (!hasFiles(e) || this.ended || !this.access.canWriteIn(this.folder)) return;
      depth++;
      document.body.classList.add("dragging");
    });
    drop.addEventListener("dragleave", () => {
      if (--depth <= 0) {
        depth = 0;
        document.body.classList.remove("dragging");
      }
    });
    drop.addEventListener("dragover", (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = !this.ended && this.access.canWriteIn(this.folder) ? "copy" : "none";
    });
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      depth = 0;
      document.body.classList.remove("dragging");
      if (this.ended) return;
      if (!this.access.canWriteIn(this.folder)) {
        this.showError(`You may not upload into ${this.folder || "this room"}.`);
        return;
      }
      const files = [...(e.dataTransfer?.files ?? [])];
      if (files.length) this.upload(files);
    });
    $("rows").addEventListener("keydown", (e) => this.rowKeys(e));
    $("dlg-cancel").addEventListener("click", () => $("dlg").close("cancel"));
  }

  connState(s, detail) {
    const c = $("conn");
    c.dataset.state = s;
    c.textContent = s === "open" ? "live" : s === "closed" ? "disconnected" : detail ? "reconnecting" : "connecting";
    c.title = detail ?? "";
    if (s === "closed") {
      this.fail(`Disconnected: ${detail}. Sign in again with a new token.`, true);
    } else if (detail) {
      this.showError(detail[0].toUpperCase() + detail.slice(1) + ".");
      this.connError = true;
    } else if (s === "open" && this.connError) {
      this.connError = false;
      this.clearError();
      this.announce("Connected again.");
    }
  }

  // ---- listing ----

  async list(user = false) {
    const n = ++this.listing;
    const folder = this.folder;
    try {
      const files = await this.conn.list(folder);
      if (n !== this.listing) return;
      this.entries = files;
      this.missing = false;
      this.loaded = true;
      this.render();
      if (this.focusPath && files.some((f) => join(folder, f.name) === this.focusPath)) this.focusPath = undefined;
      if (user) this.announce(`${folder || this.room}: ${files.length} items.`);
    } catch (err) {
      if (n !== this.listing) return;
      if (err instanceof RoomError && err.code === 404) {
        // A folder exists while something is in it: a new one is empty.
        this.entries = [];
        this.missing = true;
        this.loaded = true;
        this.render();
        return;
      }
      if (err instanceof RoomError && err.code === 0) return; // reconnecting lists again
      this.showError(`list ${folder || "/"}: ${err.message}`);
    }
  }

  // relist after events, once per burst.
  relist() {
    clearTimeout(this.relistTimer);
    this.relistTimer = setTimeout(() => this.list(), 80);
  }

  touches(p) {
    if (p === undefined || p === null) return false;
    const f = this.folder;
    return f === "" || p === f || p.startsWith(f + "/");
  }

  event(e) {
    if (e.type === "overflow") {
      this.announce("Changes were missed; the list is read again.");
      this.relist();
      if (this.versionsOf) this.showVersions(this.versionsOf, true);
      return;
    }
    const paths = e.type === "moved" ? [e.source, e.destination] : [e.path];
    if (paths.some((p) => this.touches(p))) this.relist();
    if (this.versionsOf && paths.includes(this.versionsOf)) this.showVersions(this.versionsOf, true);
    if (e.participant && e.participant === this.conn.participantID) return;
    const who = e.name ? ` by ${e.name}` : "";
    const what = { updated: "changed", deleted: "deleted", moved: "moved" }[e.type];
    const name = e.type === "moved" ? `${e.source} → ${e.destination}` : e.path;
    if (what && paths.some((p) => this.touches(p))) this.announce(`${name} ${what}${who}.`);
  }

  // ---- rendering ----

  render() {
    this.renderCrumbs();
    const writable = !this.ended && this.access.canWriteIn(this.folder);
    $("upload-label").hidden = !writable;
    $("upload-input").disabled = !writable;
    $("new-folder").hidden = !writable;
    $("drop-hint").hidden = !writable;
    $("readonly-note").hidden = writable;
    const rows = $("rows");
    // The focus stays on the row it was on (or goes to the one an action
    // named, a renamed file's), across the rebuild.
    const focused = this.focusPath ?? document.activeElement?.closest?.("#rows tr")?.dataset.path;
    const focusedAction = this.focusPath ? "open" : document.activeElement?.dataset?.action;
    rows.replaceChildren();
    const entries = [...this.entries].sort((a, b) => Number(b.is_folder) - Number(a.is_folder) || a.name.localeCompare(b.name));
    for (const e of entries) rows.append(this.row(e));
    const empty = $("empty");
    empty.hidden = entries.length > 0;
    empty.textContent = !this.loaded
      ? "Loading…"
      : this.missing
        ? `${this.folder} is a new folder: it exists once a file is uploaded into it.`
        : "This folder is empty.";
    if (focused !== undefined) {
      const tr = [...rows.rows].find((r) => r.dataset.path === focused);
      const target = tr?.querySelector(`[data-action="${focusedAction}"]`) ?? tr?.querySelector("button");
      target?.focus();
    }
  }

  renderCrumbs() {
    const nav = $("crumbs");
    const parts = this.folder ? this.folder.split("/") : [];
    const list = el("ol");
    const link = (label, path, current) =>
      el("li", {}, current ? el("span", { "aria-current": "page", text: label }) : el("a", { href: "#/" + encodeURIComponent(path).replace(/%2F/g, "/"), text: label }));
    list.append(link(this.room, "", parts.length === 0));
    parts.forEach((p, i) => list.append(link(p, parts.slice(0, i + 1).join("/"), i === parts.length - 1)));
    nav.replaceChildren(list);
  }

  row(e) {
    const path = join(this.folder, e.name);
    const canWrite = this.access.canWrite(path) && !(e.is_folder && !this.access.canWriteIn(path));
    const name = e.is_folder
      ? el("a", { href: "#/" + encodeURIComponent(path).replace(/%2F/g, "/"), class: "name folder", "data-action": "open" }, el("span", { class: "ico folder", "aria-hidden": "true" }), el("span", { text: e.name }))
      : el("button", { type: "button", class: "name file link", "data-action": "open", title: "Download " + e.name, onclick: () => this.download(path) }, el("span", { class: "ico file", "aria-hidden": "true" }), el("span", { text: e.name }));
    const actions = el("td", { class: "actions" });
    const act = (label, action, fn, extra = {}) =>
      actions.append(el("button", { type: "button", "data-action": action, "aria-label": `${label} ${e.name}`, onclick: fn, ...extra }, label));
    if (!e.is_folder) act("Download", "download", () => this.download(path));
    if (!e.is_folder) act("Versions", "versions", () => this.showVersions(path));
    if (canWrite) act("Rename", "rename", () => this.rename(path, e.is_folder));
    if (canWrite) act("Delete", "delete", () => this.remove(path, e.is_folder), { class: "danger" });
    return el(
      "tr",
      { "data-path": path, "data-kind": e.is_folder ? "folder" : "file" },
      el("td", { class: "namecell" }, name),
      el("td", { class: "num", text: e.is_folder ? "" : size(e.size) }),
      el("td", { class: "when", text: e.is_folder ? "" : when(e.updated_at) }),
      actions,
    );
  }

  // rowKeys moves the focus between rows with the arrow keys, keeping
  // the column (the action) it was on.
  rowKeys(e) {
    if (!["ArrowDown", "ArrowUp", "Home", "End"].includes(e.key)) return;
    const tr = e.target.closest("tr");
    if (!tr) return;
    const rows = [...$("rows").rows];
    let i = rows.indexOf(tr);
    i = e.key === "ArrowDown" ? i + 1 : e.key === "ArrowUp" ? i - 1 : e.key === "Home" ? 0 : rows.length - 1;
    const next = rows[Math.max(0, Math.min(rows.length - 1, i))];
    const target = next.querySelector(`[data-action="${e.target.dataset.action}"]`) ?? next.querySelector("a, button");
    target?.focus();
    e.preventDefault();
  }

  // ---- messages ----

  announce(msg) {
    const s = $("status");
    s.textContent = "";
    // A new text node, so that screen readers announce a repeat too.
    setTimeout(() => (s.textContent = msg), 20);
  }

  showError(msg) {
    const e = $("error");
    this.connError = false;
    e.textContent = String(msg).split("\n")[0];
    e.hidden = false;
  }

  clearError() {
    const e = $("error");
    e.hidden = true;
    e.textContent = "";
  }

  fail(msg, signInLink) {
    this.showError(msg);
    if (signInLink) {
      const e = $("error");
      e.append(" ", el("a", { href: "/?room=" + encodeURIComponent(this.room), text: "Sign in" }));
    }
    $("toolbar").hidden = true;
    $("drop-hint").hidden = true;
    this.ended = true; // no more drops, nor their uploads
  }

  // callError shows a refused call in one line.
  callError(what, err) {
    if (err instanceof RoomError && err.code === 403) this.showError(`${what}: not allowed (${err.message})`);
    else this.showError(`${what}: ${err.message}`);
  }

  // ---- actions ----

  async download(path) {
    try {
      const url = await this.conn.downloadURL(path);
      const a = el("a", { href: url, download: base(path), class: "visually-hidden" });
      document.body.append(a);
      a.click();
      a.remove();
      this.announce(`Downloading ${base(path)}.`);
    } catch (err) {
      this.callError(`download ${path}`, err);
    }
  }

  async remove(path, isFolder) {
    const ok = await this.dialog({
      title: isFolder ? `Delete the folder ${base(path)}?` : `Delete ${base(path)}?`,
      body: [el("p", { text: isFolder ? `Everything in ${path} is deleted. Past versions stay restorable for a while.` : `${path} is deleted. Its past versions stay restorable for a while.` })],
      ok: "Delete",
      danger: true,
    });
    if (!ok) return;
    try {
      await this.conn.remove(path, isFolder);
      this.clearError();
      this.announce(`${path} deleted.`);
      this.list();
    } catch (err) {
      this.callError(`delete ${path}`, err);
    }
  }

  async rename(path, isFolder) {
    const input = el("input", { id: "dlg-input", value: base(path), autocomplete: "off", spellcheck: "false", required: true });
    const to = await this.dialog({
      title: `Rename ${base(path)}`,
      body: [
        el("label", { for: "dlg-input", text: "New name (or a path from the room's top, starting with /)" }),
        input,
      ],
      ok: "Rename",
      focus: input,
      value: () => input.value.trim(),
      check: (v) => (!v || v === "/" ? "Enter a name." : ""),
    });
    if (!to) return;
    const dest = to.startsWith("/") ? to.replace(/^\/+/, "") : join(parent(path), to);
    if (dest === path) return;
    if (!this.access.canWrite(dest)) {
      this.showError(`rename ${path}: you may not write ${dest}`);
      return;
    }
    try {
      await this.conn.move(path, dest);
      if (parent(dest) === this.folder) this.focusPath = dest;
      this.clearError();
      this.announce(`${path} renamed to ${dest}.`);
      this.list();
    } catch (err) {
      this.callError(`rename ${path}`, err);
    }
  }

  async newFolder() {
    const input = el("input", { id: "dlg-input", autocomplete: "off", spellcheck: "false", required: true });
    const name = await this.dialog({
      title: "New folder",
      body: [el("p", { text: "A folder exists once something is in it: name it, then choose the files to upload into it." }), el("label", { for: "dlg-input", text: "Folder name" }), input],
      ok: "Choose files…",
      focus: input,
      value: () => input.value.trim(),
      check: (v) => (!v ? "Enter a name." : /[/\\]/.test(v) || v.startsWith(".") ? "A name without '/', nor a leading '.'." : this.entries.some((e) => e.name === v) ? `${v} exists already.` : ""),
    });
    if (!name) return;
    // The folder now, not at the hashchange that follows: the files
    // chosen next go into it.
    this.folder = join(this.folder, name);
    this.entries = [];
    this.loaded = false;
    this.render();
    location.hash = "#/" + encodeURIComponent(this.folder).replace(/%2F/g, "/");
    // Still within the click that closed the dialog: the picker may open.
    $("upload-input").click();
  }

  async upload(files) {
    const folder = this.folder;
    const existing = new Set(this.entries.filter((e) => !e.is_folder).map((e) => e.name));
    const clashes = files.filter((f) => existing.has(f.name));
    let overwrite = false;
    if (clashes.length) {
      overwrite = await this.dialog({
        title: clashes.length === 1 ? `Replace ${clashes[0].name}?` : `Replace ${clashes.length} files?`,
        body: [el("p", { text: `${clashes.map((f) => f.name).join(", ")} exist${clashes.length === 1 ? "s" : ""} already. The current version is kept in the file's history.` })],
        ok: "Replace",
      });
      if (!overwrite) files = files.filter((f) => !existing.has(f.name));
    }
    for (const file of files) this.uploadOne(file, join(folder, file.name), overwrite && existing.has(file.name));
  }

  uploadOne(file, path, overwrite) {
    if (!this.access.canWrite(path)) {
      this.showError(`upload ${path}: you may not write here`);
      return;
    }
    const prev = this.uploads.get(path);
    if (prev && !prev.done) return;
    const bar = el("progress", { max: "100", value: "0", "aria-label": `Upload of ${file.name}` });
    const pct = el("span", { class: "pct", text: "0%" });
    const cancel = el("button", { type: "button", "aria-label": `Cancel the upload of ${file.name}` }, "Cancel");
    const li = el("li", { "data-path": path }, el("span", { class: "up-name", text: path }), bar, pct, cancel);
    $("upload-list").prepend(li);
    $("uploads").hidden = false;
    const item = { li, done: false };
    this.uploads.set(path, item);
    this.announce(`Uploading ${file.name}.`);
    const finish = (state, text) => {
      item.done = true;
      li.dataset.state = state;
      pct.textContent = text;
      cancel.remove();
    };
    const up = startUpload({
      file,
      path,
      overwrite,
      endpoint: `${location.origin}${this.tusPath}${encodeURIComponent(this.room)}/`,
      token: this.token,
      onProgress: (sent, total) => {
        const p = total ? Math.floor((sent / total) * 100) : 100;
        bar.value = p;
        pct.textContent = `${p}%`;
        li.dataset.sent = String(sent);
      },
      onDone: () => {
        bar.value = 100;
        finish("done", "done");
        this.announce(`${file.name} uploaded.`);
        this.relist();
      },
      onError: (err) => {
        const msg = describe(err, path);
        finish("error", "failed");
        this.showError(msg);
      },
    });
    cancel.addEventListener("click", () => {
      up.abort(true);
      finish("cancelled", "cancelled");
      this.announce(`Upload of ${file.name} cancelled.`);
    });
  }

  async showVersions(path, refresh = false) {
    if (refresh && this.versionsOf !== path) return;
    let versions;
    try {
      versions = await this.conn.versions(path);
    } catch (err) {
      if (refresh) return;
      this.callError(`versions ${path}`, err);
      return;
    }
    const canRestore = this.access.canWrite(path);
    const table = el(
      "table",
      { class: "versions" },
      el("caption", { class: "visually-hidden", text: `Past versions of ${path}` }),
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Saved" }), el("th", { scope: "col", text: "Replaced" }), el("th", { scope: "col", class: "num", text: "Size" }), el("th", { scope: "col", text: "Why" }), el("th", { scope: "col" }, el("span", { class: "visually-hidden", text: "Actions" })))),
    );
    const tb = el("tbody");
    for (const v of versions) {
      const restore = canRestore
        ? el("button", {
            type: "button",
            "data-version": v.id,
            "aria-label": `Restore the version saved ${when(v.modified_at)}`,
            onclick: async () => {
              try {
                await this.conn.restore(path, v.id);
                $("dlg").close("done");
                this.clearError();
                this.announce(`${path} restored to the version saved ${when(v.modified_at)}.`);
                this.list();
              } catch (err) {
                this.callError(`restore ${path}`, err);
                $("dlg").close("error");
              }
            },
          }, "Restore")
        : "";
      tb.append(el("tr", {}, el("td", { text: when(v.modified_at) }), el("td", { text: when(v.replaced_at) }), el("td", { class: "num", text: size(v.size) }), el("td", { text: v.reason }), el("td", {}, restore)));
    }
    table.append(tb);
    const body = versions.length ? [table] : [el("p", { text: "No past versions are kept of this file." })];
    if (refresh) {
      $("dlg-body").replaceChildren(...body);
      return;
    }
    this.versionsOf = path;
    await this.dialog({ title: `Versions of ${base(path)}`, body, ok: null, cancel: "Close", wide: true });
    this.versionsOf = null;
  }

  // dialog shows the modal dialog and resolves with true (or value())
  // when confirmed, false when cancelled; the focus returns to where it
  // was.
  dialog({ title, body, ok = "OK", cancel = "Cancel", danger = false, focus, value, check, wide = false }) {
    const d = $("dlg");
    const back = document.activeElement;
    $("dlg-title").textContent = title;
    $("dlg-body").replaceChildren(...body);
    const err = $("dlg-error");
    err.hidden = true;
    const okb = $("dlg-ok");
    okb.hidden = ok === null;
    okb.textContent = ok ?? "";
    okb.className = danger ? "danger" : "primary";
    $("dlg-cancel").textContent = cancel;
    d.classList.toggle("wide", wide);
    return new Promise((resolve) => {
      const form = $("dlg-form");
      const submit = (e) => {
        e.preventDefault();
        const v = value ? value() : true;
        const problem = check ? check(v) : "";
        if (problem) {
          err.textContent = problem;
          err.hidden = false;
          focus?.focus();
          return;
        }
        d.close("ok");
        done(v);
      };
      const closed = () => done(false);
      let settled = false;
      const done = (v) => {
        if (settled) return;
        settled = true;
        form.removeEventListener("submit", submit);
        d.removeEventListener("close", closed);
        if (d.open) d.close();
        if (back && document.contains(back)) back.focus();
        resolve(v);
      };
      form.addEventListener("submit", submit);
      d.addEventListener("close", closed);
      d.showModal();
      (focus ?? (ok === null ? $("dlg-cancel") : okb)).focus();
      if (focus?.select) focus.select();
    });
  }
}

// ---- start ----

function main() {
  const page = document.body.dataset.page;
  if (page === "signin") signIn();
  else if (page === "room") {
    new App().start();
  }
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
else main();

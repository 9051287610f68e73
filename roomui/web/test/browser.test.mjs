// The file browser in a real browser (Debian's chromium, driven by
// playwright-core) against a real `roomstore serve`: two participants'
// pages in one room see each other's uploads, renames and deletes without
// reloading; a read-only participant's page offers no change; versions
// restore; the token never reaches the server's logs. Each state is saved
// as a screenshot (UI_ARTIFACTS, printed at the end).
import { after, before, describe, test } from "node:test";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import {
  ARTIFACTS,
  BIN,
  SECRET,
  STEP_TIMEOUT,
  assert,
  dropFiles,
  launch,
  mintToken,
  pattern,
  row,
  screenshot,
  shots,
  startFront,
  startServer,
  until,
  waitRow,
  watchPage,
  withTimeout,
} from "./harness.mjs";

let srv;
let browser;
let origin;

before(async () => {
  srv = await startServer();
  origin = `http://${srv.addr}`;
  browser = await launch();
});

after(async () => {
  await browser?.close();
  if (srv) assert.equal(await srv.stop(), 0, "roomstore serve exits 0 after SIGTERM:\n" + srv.logs.slice(-20).join("\n"));
  if (shots.length) console.log(`== ui: ${shots.length} screenshots in ${ARTIFACTS}:\n${shots.map((s) => "   " + s).join("\n")}`);
});

// open signs a participant into room in a new page and waits until the
// page is live (its WebSocket greeted) and has listed the room.
async function open(room, token, { width = 1200, height = 800 } = {}) {
  const page = await browser.context.newPage();
  await page.setViewportSize({ width, height });
  const problems = watchPage(page, origin);
  await page.goto(`${origin}/ui/rooms/${encodeURIComponent(room)}#token=${encodeURIComponent(token)}`, { timeout: STEP_TIMEOUT });
  await page.locator('#conn[data-state="open"]').waitFor({ timeout: STEP_TIMEOUT });
  return { page, problems };
}

// put writes a file into the room as another program would: the
// roomstore command through ws://.
function put(room, path, bytes, name = "carl") {
  return new Promise((resolve, reject) => {
    const child = execFile(
      BIN,
      ["put", "-", path, "--overwrite", "--store", `ws://${srv.addr}/rooms/${encodeURIComponent(room)}`],
      { env: { ...process.env, ROOMSTORE_TOKEN: mintToken(room, { name }), ROOMSTORE_TOKEN_SECRET: SECRET }, timeout: STEP_TIMEOUT },
      (err, stdout, stderr) => (err ? reject(new Error(`roomstore put ${path}: ${stderr || err.message}`)) : resolve()),
    );
    child.stdin.end(bytes);
  });
}

// get reads a file of the room with the roomstore command through ws://.
function get(room, path) {
  return new Promise((resolve, reject) => {
    execFile(
      BIN,
      ["get", path, "-", "--store", `ws://${srv.addr}/rooms/${encodeURIComponent(room)}`],
      { env: { ...process.env, ROOMSTORE_TOKEN: mintToken(room, { name: "gina" }) }, encoding: "buffer", maxBuffer: 256 << 20, timeout: 60_000 },
      (err, stdout, stderr) => (err ? reject(new Error(`roomstore get ${path}: ${stderr || err.message}`)) : resolve(stdout)),
    );
  });
}

// download clicks the Download button of path's row and returns the bytes
// the browser saved.
async function download(page, path) {
  const [dl] = await withTimeout(
    Promise.all([page.waitForEvent("download", { timeout: STEP_TIMEOUT }), row(page, path).locator('[data-action="download"]').click()]),
    STEP_TIMEOUT,
    `the download of ${path}`,
  );
  const file = await withTimeout(dl.path(), STEP_TIMEOUT, `the bytes of ${path}`);
  assert.equal(dl.suggestedFilename(), path.split("/").pop());
  return readFile(file);
}

// progressOf records, in the page, every value of the upload of path's
// progress (the bytes sent) as the page shows it.
async function recordProgress(page, path) {
  await page.evaluate((path) => {
    window.__progress = window.__progress ?? {};
    const seen = (window.__progress[path] = []);
    new MutationObserver(() => {
      const li = document.querySelector(`#upload-list li[data-path="${CSS.escape(path)}"]`);
      if (li?.dataset.sent && seen.at(-1) !== Number(li.dataset.sent)) seen.push(Number(li.dataset.sent));
    }).observe(document.getElementById("upload-list"), { subtree: true, childList: true, attributes: true });
  }, path);
}

async function waitUploaded(page, path) {
  const li = page.locator(`#upload-list li[data-path="${path}"]`);
  await until(async () => {
    const state = await li.getAttribute("data-state").catch(() => null);
    if (state === "error") throw new Error(`upload ${path} failed: ${await page.locator("#error").textContent()}`);
    return state === "done";
  }, 60_000, `the upload of ${path} to finish`).catch(async (err) => {
    const list = await page.locator("#upload-list li").evaluateAll((lis) => lis.map((li) => `${li.dataset.path} ${li.dataset.state ?? "sending"} ${li.dataset.sent ?? 0}`));
    throw new Error(`${err.message}; the uploads: ${list.join(", ") || "none"}; the folder: ${await page.evaluate(() => location.hash)}`);
  });
}

function noProblems(name, problems) {
  assert.deepEqual(problems, [], `${name}: no console error, CSP violation, exception or foreign request`);
}

describe("two participants in one room", () => {
  const room = "team-" + process.pid;
  const aliceToken = mintToken(room, { name: "alice" });
  const bobToken = mintToken(room, { name: "bob" });
  let A;
  let B;

  before(async () => {
    A = await open(room, aliceToken);
    B = await open(room, bobToken);
  });

  test("the token leaves the address bar and never reaches the server", async () => {
    for (const p of [A.page, B.page]) {
      assert.equal(new URL(p.url()).hash, "", "the fragment is gone");
      assert.equal(await p.evaluate((room) => sessionStorage.getItem("roomstore.token." + room) !== null, room), true, "kept for reloads");
    }
    await A.page.reload();
    await A.page.locator('#conn[data-state="open"]').waitFor({ timeout: STEP_TIMEOUT });
    assert.equal(await A.page.locator("#who").textContent(), "alice", "a reload signs in again from sessionStorage");
    assert.ok(srv.logs.some((l) => /msg="file browser" url=http:\/\/127\.0\.0\.1:\d+\/ room="http:\/\/127\.0\.0\.1:\d+\/ui\/rooms\/\{room\}#token=JWT"/.test(l)), "serve logs the file browser's URL");
    const leaked = srv.logs.filter((l) => l.includes(aliceToken.split(".")[2]) || l.includes(bobToken.split(".")[2]));
    assert.deepEqual(leaked, [], "no log line holds a token");
    await screenshot(A.page, "empty-room");
  });

  const notes = "the first notes\n";
  const big = { name: "big.bin", size: 24 << 20, seed: 7 };

  test("a drop into page A shows progress, then the files appear in page B", async () => {
    await recordProgress(A.page, "big.bin");
    await dropFiles(A.page, [{ name: "notes.txt", text: notes, type: "text/plain" }, big]);
    await A.page.locator('#upload-list li[data-path="big.bin"] progress').waitFor({ timeout: STEP_TIMEOUT });
    await screenshot(A.page, "uploading");
    await waitUploaded(A.page, "notes.txt");
    await waitUploaded(A.page, "big.bin");
    const progress = await A.page.evaluate(() => window.__progress["big.bin"]);
    assert.ok(progress.some((n) => n > 0 && n < big.size), `progress between 0 and the size was shown: ${progress}`);
    assert.equal(progress.at(-1), big.size, "the progress ends at the size");
    await waitRow(B.page, "notes.txt", { what: "page B shows notes.txt without a reload" });
    await waitRow(B.page, "big.bin");
    assert.match(await row(B.page, "big.bin").locator("td.num").textContent(), /^24 MiB$/);
    assert.match(await row(B.page, "notes.txt").locator("td.num").textContent(), /^16 bytes$/);
    await waitRow(A.page, "big.bin");
    await screenshot(A.page, "uploaded-A");
    await screenshot(B.page, "uploaded-B");
    assert.deepEqual(await download(B.page, "big.bin"), pattern(big.size, big.seed), "page B downloads page A's bytes");
    assert.equal((await download(B.page, "notes.txt")).toString(), notes);
  });

  test("a rename in page B appears in page A", async () => {
    await row(B.page, "notes.txt").locator('[data-action="rename"]').click();
    const input = B.page.locator("#dlg-input");
    await input.waitFor({ timeout: STEP_TIMEOUT });
    assert.equal(await B.page.evaluate(() => document.activeElement?.id), "dlg-input", "the dialog takes the focus");
    await screenshot(B.page, "rename-dialog");
    await input.fill("renamed.txt");
    await input.press("Enter");
    await waitRow(A.page, "renamed.txt", { what: "page A shows the rename" });
    await waitRow(A.page, "notes.txt", { gone: true, what: "page A drops the old name" });
    await until(async () => (await A.page.locator("#status").textContent()) === "notes.txt → renamed.txt moved by bob.", STEP_TIMEOUT, "page A's live region to tell who moved what");
    assert.equal(
      await B.page.evaluate(() => document.activeElement?.closest("tr")?.dataset.path ?? document.activeElement?.id),
      "renamed.txt",
      "the focus comes back to the renamed file's row",
    );
    await screenshot(A.page, "renamed-A");
  });

  test("a delete in page B, once confirmed, disappears from page A", async () => {
    await row(B.page, "big.bin").locator('[data-action="delete"]').click();
    await B.page.locator("#dlg[open]").waitFor({ timeout: STEP_TIMEOUT });
    await screenshot(B.page, "delete-dialog");
    await B.page.keyboard.press("Escape");
    await B.page.locator("#dlg[open]").waitFor({ state: "detached", timeout: STEP_TIMEOUT }).catch(() => {});
    await until(async () => !(await B.page.locator("#dlg").evaluate((d) => d.open)), STEP_TIMEOUT, "the dialog to close");
    assert.equal(await row(A.page, "big.bin").count(), 1, "cancelled: nothing deleted");
    await row(B.page, "big.bin").locator('[data-action="delete"]').click();
    await B.page.locator("#dlg-ok").click();
    await waitRow(A.page, "big.bin", { gone: true, what: "page A drops the deleted file" });
    await waitRow(B.page, "big.bin", { gone: true });
    await screenshot(A.page, "deleted-A");
  });

  test("another participant's overwrite shows live; a past version restores", async () => {
    await put(room, "renamed.txt", Buffer.from("a much longer second version of the notes\n"));
    await until(async () => (await row(A.page, "renamed.txt").locator("td.num").textContent()) === "42 bytes", STEP_TIMEOUT, "page A to show the new size");
    await row(A.page, "renamed.txt").locator('[data-action="versions"]').click();
    const restore = A.page.locator("#dlg .versions button[data-version]");
    await restore.first().waitFor({ timeout: STEP_TIMEOUT });
    assert.equal(await restore.count(), 1, "one past version: the first notes (the rename keeps none of its own)");
    await screenshot(A.page, "versions");
    await restore.first().click();
    await until(async () => (await row(B.page, "renamed.txt").locator("td.num").textContent()) === "16 bytes", STEP_TIMEOUT, "page B to show the restored size");
    assert.equal((await download(B.page, "renamed.txt")).toString(), notes, "the restored bytes are the first version's");
    await screenshot(B.page, "restored-B");
  });

  test("a new folder by uploading into it; breadcrumbs and back", async () => {
    await A.page.locator("#new-folder").click();
    await A.page.locator("#dlg-input").fill("docs");
    const [chooser] = await Promise.all([A.page.waitForEvent("filechooser", { timeout: STEP_TIMEOUT }), A.page.locator("#dlg-ok").click()]);
    await chooser.setFiles({ name: "plan.md", mimeType: "text/markdown", buffer: Buffer.from("# plan\n") });
    await waitUploaded(A.page, "docs/plan.md");
    await waitRow(A.page, "docs/plan.md");
    assert.equal(await A.page.locator('#crumbs [aria-current="page"]').textContent(), "docs");
    await waitRow(B.page, "docs", { what: "page B shows the new folder" });
    await row(B.page, "docs").locator('[data-action="open"]').click();
    await waitRow(B.page, "docs/plan.md");
    await screenshot(B.page, "folder-B");
    await B.page.goBack();
    await waitRow(B.page, "renamed.txt", { what: "back returns to the room's top" });
    await B.page.goForward();
    await waitRow(B.page, "docs/plan.md", { what: "forward returns to docs" });
    await B.page.locator("#crumbs a").first().click();
    await waitRow(B.page, "docs");
  });

  test("keyboard: Tab reaches the rows, arrows move between them, Enter opens", async () => {
    const first = row(B.page, "docs").locator('[data-action="open"]');
    await first.focus();
    await B.page.keyboard.press("ArrowDown");
    assert.equal(await B.page.evaluate(() => document.activeElement.closest("tr")?.dataset.path), "renamed.txt");
    await B.page.keyboard.press("ArrowUp");
    assert.equal(await B.page.evaluate(() => document.activeElement.closest("tr")?.dataset.path), "docs");
    await B.page.keyboard.press("Enter");
    await waitRow(B.page, "docs/plan.md", { what: "Enter opens the folder" });
    const outline = await B.page.evaluate(() => {
      document.querySelector("#refresh").focus();
      return getComputedStyle(document.activeElement).outlineStyle;
    });
    assert.notEqual(outline, "none", "the focus is visible");
  });

  test("a phone's width", async () => {
    await A.page.setViewportSize({ width: 390, height: 844 });
    await A.page.locator("#crumbs a").first().click();
    await waitRow(A.page, "renamed.txt");
    const overflow = await A.page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `nothing wider than the screen (${overflow} px too wide)`);
    await screenshot(A.page, "phone");
    await row(A.page, "renamed.txt").locator('[data-action="versions"]').click();
    await A.page.locator("#dlg .versions tbody tr").first().waitFor();
    const wide = await A.page.evaluate(() => document.getElementById("dlg").getBoundingClientRect().right);
    assert.ok(wide <= 390, `the dialog fits the screen (its right edge at ${wide} px)`);
    await screenshot(A.page, "phone-versions");
    await A.page.keyboard.press("Escape");
    await A.page.setViewportSize({ width: 1200, height: 800 });
  });

  test("no page had an error", () => {
    noProblems("page A", A.problems);
    noProblems("page B", B.problems);
  });
});

describe("a read-only participant", () => {
  const room = "readers-" + process.pid;
  test("sees the files and their versions, and nothing that changes them", async () => {
    await put(room, "report.txt", Buffer.from("one\n"));
    await put(room, "report.txt", Buffer.from("two\n"));
    const token = mintToken(room, { name: "carol", paths: [{ path: "", read_only: true }] });
    const C = await open(room, token);
    await waitRow(C.page, "report.txt");
    assert.equal(await C.page.locator("#upload-label").isVisible(), false, "no upload");
    assert.equal(await C.page.locator("#new-folder").isVisible(), false, "no new folder");
    assert.equal(await C.page.locator("#readonly-note").isVisible(), true, "says it is read only");
    assert.equal(await row(C.page, "report.txt").locator('[data-action="rename"], [data-action="delete"]').count(), 0, "no rename, no delete");
    assert.equal(await row(C.page, "report.txt").locator('[data-action="download"]').count(), 1, "a download");
    await row(C.page, "report.txt").locator('[data-action="versions"]').click();
    await C.page.locator("#dlg .versions tbody tr").first().waitFor({ timeout: STEP_TIMEOUT });
    assert.equal(await C.page.locator("#dlg .versions button[data-version]").count(), 0, "no restore");
    await screenshot(C.page, "readonly-versions");
    await C.page.keyboard.press("Escape");
    await dropFiles(C.page, [{ name: "sneaky.txt", text: "x" }]);
    await C.page.locator("#error").waitFor({ timeout: STEP_TIMEOUT });
    assert.match(await C.page.locator("#error").textContent(), /may not upload/);
    await screenshot(C.page, "readonly");
    await put(room, "later.txt", Buffer.from("live\n"));
    await waitRow(C.page, "later.txt", { what: "a reader sees changes live too" });
    noProblems("page C", C.problems);
  });

  test("a participant limited to a folder sees only it, and writes only there", async () => {
    await put(room, "shared/inbox/a.txt", Buffer.from("a\n"));
    await put(room, "private/secret.txt", Buffer.from("s\n"));
    const token = mintToken(room, { name: "dave", paths: [{ path: "shared/inbox/" }, { path: "shared/", read_only: true }] });
    const D = await open(room, token);
    await waitRow(D.page, "shared");
    assert.equal(await row(D.page, "private").count(), 0, "the server lists no unreadable folder");
    assert.equal(await D.page.locator("#upload-label").isVisible(), false, "no upload at the top");
    await row(D.page, "shared").locator('[data-action="open"]').click();
    await waitRow(D.page, "shared/inbox");
    assert.equal(await D.page.locator("#upload-label").isVisible(), false, "no upload in a read-only folder");
    await row(D.page, "shared/inbox").locator('[data-action="open"]').click();
    await waitRow(D.page, "shared/inbox/a.txt");
    assert.equal(await D.page.locator("#upload-label").isVisible(), true, "upload where it may write");
    assert.equal(await row(D.page, "shared/inbox/a.txt").locator('[data-action="delete"]').count(), 1);
    noProblems("page D", D.problems);
  });
});

describe("the sign-in form", () => {
  test("opens the room without sending the token to the server", async () => {
    const room = "signin-" + process.pid;
    const token = mintToken(room, { name: "erin" });
    const page = await browser.context.newPage();
    const problems = watchPage(page, origin);
    const sent = [];
    page.on("request", (r) => sent.push(r.url()));
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${origin}/`, { timeout: STEP_TIMEOUT });
    await screenshot(page, "signin-phone");
    await page.setViewportSize({ width: 1200, height: 800 });
    await screenshot(page, "signin");
    await page.locator("#signin-room").fill(room);
    await page.locator("#signin-token").fill(token);
    await page.locator("#signin button[type=submit]").click();
    await page.locator('#conn[data-state="open"]').waitFor({ timeout: STEP_TIMEOUT });
    assert.equal(new URL(page.url()).pathname, `/ui/rooms/${room}`);
    assert.equal(new URL(page.url()).hash, "");
    assert.deepEqual(sent.filter((u) => u.includes(token) || u.includes(token.split(".")[2])), [], "no request URL holds the token");
    assert.equal(await page.locator("#who").textContent(), "erin");
    noProblems("sign-in", problems);
  });

  test("a token that ends ends the session, saying to sign in again", async () => {
    const room = "expiring-" + process.pid;
    const page = await browser.context.newPage();
    await page.goto(`${origin}/ui/rooms/${room}#token=${mintToken(room, { name: "jo", expiresIn: 3 })}`);
    await page.locator('#conn[data-state="open"]').waitFor();
    await page.locator('#conn[data-state="closed"]').waitFor({ timeout: 10_000 });
    assert.match(await page.locator("#error").textContent(), /^Disconnected: token expired\. Sign in again with a new token\. Sign in$/);
    assert.equal(await page.locator("#error a").getAttribute("href"), `/?room=${room}`);
    assert.equal(await page.locator("#toolbar").isVisible(), false, "nothing left to do but sign in");
    assert.equal(await page.locator("#drop-hint").isVisible(), false);
    await screenshot(page, "expired");
  });

  test("a bad token is refused in one line", async () => {
    const room = "refused-" + process.pid;
    const page = await browser.context.newPage();
    await page.goto(`${origin}/ui/rooms/${room}#token=${mintToken(room, { secret: "another-secret-of-enough-bytes-0123456789" })}`);
    await page.locator("#error").waitFor({ timeout: STEP_TIMEOUT });
    assert.match(await page.locator("#error").textContent(), /^Cannot join the room \(is the token valid.*retrying in \d+ s\.$/);
    assert.equal(await page.locator("#conn").textContent(), "reconnecting");
    await screenshot(page, "refused");
  });
});

describe("a 64 MiB upload cut mid-body", () => {
  test("resumes from the bytes the server kept and arrives byte for byte", async () => {
    const room = "cut-" + process.pid;
    const front = await startFront(srv.addr);
    try {
      const token = mintToken(room, { name: "frank" });
      const page = await browser.context.newPage();
      const problems = watchPage(page, front.origin);
      const seen = []; // the tus requests as the page made them, for a failure's message
      page.on("requestfinished", async (r) => {
        if (!new URL(r.url()).pathname.startsWith("/tus/")) return;
        const res = await r.response().catch(() => null);
        seen.push(`${r.method()} ${r.headers()["upload-offset"] ?? ""}→${res?.status()} ${res?.headers()["upload-offset"] ?? ""}`);
      });
      page.on("requestfailed", (r) => {
        if (new URL(r.url()).pathname.startsWith("/tus/")) seen.push(`${r.method()} ${r.headers()["upload-offset"] ?? ""}→${r.failure()?.errorText}`);
      });
      await page.goto(`${front.origin}/ui/rooms/${room}#token=${token}`, { timeout: STEP_TIMEOUT });
      await page.locator('#conn[data-state="open"]').waitFor({ timeout: STEP_TIMEOUT });
      const file = { name: "large.bin", size: 64 << 20, seed: 99 };
      front.proxy.cutAfter(20 << 20); // inside the third PATCH of 8 MiB
      const cut = front.proxy.cut();
      await recordProgress(page, file.name);
      await dropFiles(page, [file]);
      await withTimeout(cut, 60_000, "the proxy to cut the upload");
      await screenshot(page, "cut-mid-upload");
      await waitUploaded(page, file.name);
      await waitRow(page, file.name);
      await screenshot(page, "cut-resumed");
      assert.equal(front.proxy.cuts, 1, "one cut");
      const after = front.proxy.requests.slice(front.proxy.requests.findIndex((r) => r.method === "PATCH"));
      assert.ok(front.proxy.count("HEAD") >= 1, "the client asked the server where to resume");
      assert.equal(front.proxy.count("POST"), 1, "one upload, created once");
      const patches = after.filter((r) => r.method === "PATCH").length;
      assert.ok(patches <= 10, `${patches} PATCH requests: it resumed, it did not start again (8 chunks and the one cut)`);
      const progress = await page.evaluate((n) => window.__progress[n], file.name);
      assert.equal(progress.at(-1), file.size);
      // The download URL names the server's own address (--public-url),
      // not the proxy's: the roomstore command reads the file back.
      const got = await get(room, file.name);
      assert.equal(got.length, file.size);
      const want = pattern(file.size, file.seed);
      if (!got.equals(want)) {
        let i = 0;
        while (got[i] === want[i]) i++;
        let j = got.length - 1;
        while (got[j] === want[j]) j--;
        const probe = got.subarray(i, i + 32);
        const from = want.indexOf(probe);
        assert.fail(`the file differs from byte ${i} to byte ${j} of ${file.size}: its bytes there are ${probe.every((b) => b === 0) ? "zeros" : from >= 0 ? "the file's from byte " + from : "no bytes of the file"} (requests at the proxy: ${front.proxy.requests.map((r) => r.method).join(" ")}; the page's: ${seen.join(", ")})`);
      }
      noProblems("the proxied page", problems.filter((p) => !/ERR_CONNECTION|net::|Failed to load resource/.test(p)));
    } finally {
      await front.close();
    }
  });
});

describe("a dropped connection", () => {
  test("reconnects with backoff and shows what changed meanwhile", async () => {
    const room = "drop-" + process.pid;
    const front = await startFront(srv.addr);
    try {
      await put(room, "before.txt", Buffer.from("1\n"));
      const page = await browser.context.newPage();
      const problems = watchPage(page, front.origin);
      await page.goto(`${front.origin}/ui/rooms/${room}#token=${mintToken(room, { name: "ivan" })}`);
      await page.locator('#conn[data-state="open"]').waitFor();
      await waitRow(page, "before.txt");
      assert.equal(front.dropWebSockets({ refuse: true }), 1, "one WebSocket cut");
      await page.locator('#conn[data-state="connecting"]').waitFor();
      await page.locator("#error").waitFor();
      assert.match(await page.locator("#error").textContent(), /^The connection to the room was lost; retrying in \d+ s\.$/);
      await put(room, "meanwhile.txt", Buffer.from("2\n"));
      await put(room, "before.txt", Buffer.from("three\n"));
      await screenshot(page, "reconnecting");
      front.allowWebSockets();
      await page.locator('#conn[data-state="open"]').waitFor({ timeout: 40_000 });
      await waitRow(page, "meanwhile.txt", { what: "a file written while the page was away" });
      assert.equal(await page.locator("#error").isVisible(), false, "the error line goes once connected again");
      await until(async () => (await row(page, "before.txt").locator("td.num").textContent()) === "6 bytes", STEP_TIMEOUT, "the overwrite made while away");
      noProblems("the reconnected page", problems.filter((p) => !/WebSocket|ERR_CONNECTION|net::/.test(p)));
    } finally {
      await front.close();
    }
  });
});

describe("an upload cut by a reload", () => {
  test("resumes when the same file is dropped again, without a new upload", async () => {
    const room = "reload-" + process.pid;
    const { page, problems } = await open(room, mintToken(room, { name: "hana" }));
    const tus = [];
    page.on("request", (r) => {
      if (new URL(r.url()).pathname.startsWith("/tus/")) tus.push(r.method());
    });
    const file = { name: "film.bin", size: 64 << 20, seed: 5 };
    await recordProgress(page, file.name);
    await dropFiles(page, [file]);
    await until(async () => Number((await page.locator(`#upload-list li[data-path="${file.name}"]`).getAttribute("data-sent")) ?? 0) >= 8 << 20, STEP_TIMEOUT, "the first 8 MiB to be sent");
    await page.reload();
    await page.locator('#conn[data-state="open"]').waitFor();
    assert.equal(await row(page, file.name).count(), 0, "no file yet: the upload is unfinished");
    const before = tus.length;
    assert.equal(tus.filter((m) => m === "POST").length, 1);
    await recordProgress(page, file.name);
    await dropFiles(page, [file]);
    await waitUploaded(page, file.name);
    await waitRow(page, file.name);
    const again = tus.slice(before);
    assert.equal(again.filter((m) => m === "POST").length, 0, `no new upload after the reload: ${again}`);
    assert.equal(again[0], "HEAD", "it asks the server where to resume");
    const progress = await page.evaluate((n) => window.__progress[n], file.name);
    assert.ok(progress[0] >= 8 << 20, `the progress starts where the server stopped: ${progress.slice(0, 3)}`);
    const got = await get(room, file.name);
    assert.ok(got.equals(pattern(file.size, file.seed)), "the file is byte-exact");
    assert.equal(await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("tus::")).length), 0, "a finished upload is forgotten");
    await screenshot(page, "resumed-after-reload");
    noProblems("the reloaded page", problems);
  });
});

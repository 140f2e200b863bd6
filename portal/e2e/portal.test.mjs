// End-to-end tests of the portal in headless Chromium (Debian's package,
// driven by playwright-core): a real `commons serve`, a real browser, and
// the flows a user clicks through. Screenshots of every page are written to
// $COMMONS_SCREENSHOTS (default: target/portal-screenshots) for review.
//
// COMMONS_BIN picks the binary (default: target/release/commons).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { createHash } from "node:crypto";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const ROOT = resolve(import.meta.dirname, "../..");
const BIN = process.env.COMMONS_BIN || join(ROOT, "target/release/commons");
const SHOTS = process.env.COMMONS_SCREENSHOTS || join(ROOT, "target/portal-screenshots");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const PASSWORD = "correct horse battery";

let server, base, dataDir, browser, page, adminToken, loginLink;

function freePort() {
  return new Promise((ok) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => ok(port));
    });
  });
}

async function waitForServer(url) {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${url}/_status`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("commons serve did not start");
}

async function api(method, path, body, token = adminToken) {
  const response = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function exchange(credentials) {
  const response = await fetch(`${base}/user/credentials/api/access_token`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(credentials),
  });
  return response;
}

function cli(...args) {
  return execFileSync(BIN, [...args, "--data-dir", dataDir], { input: `${PASSWORD}\n`, encoding: "utf8" });
}

async function shot(name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** A TSV file on disk for the file chooser. */
function tsv(name, rows) {
  const path = join(dataDir, name);
  writeFileSync(path, rows.map((r) => r.join("\t")).join("\n") + "\n");
  return path;
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  dataDir = mkdtempSync(join(tmpdir(), "commons-e2e-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, "--public-url", base], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  server.stderr.on("data", (chunk) => (log += chunk));
  await waitForServer(base);
  loginLink = log.match(/(http\S+\/user\/login\/link\?token=\S+)/)?.[1];
  assert.ok(loginLink, `bootstrap prints a one-time login link: ${log}`);
  const credentials = JSON.parse(readFileSync(join(dataDir, "credentials.json"), "utf8"));
  adminToken = (await (await exchange(credentials)).json()).access_token;
  cli("users", "add", "alice", "--admin", "--password-stdin");
  cli("users", "add", "rita", "--password-stdin");
  await api("POST", "/api/v0/submission/", { type: "program", name: "demo", dbgap_accession_number: "demo" });
  await api("POST", "/api/v0/submission/demo", { type: "project", code: "lung", name: "Lung", dbgap_accession_number: "lung" });
  await api("POST", "/authz/policy", { id: "lung-reader", role_ids: ["reader"], resource_paths: ["/programs/demo/projects/lung"] });
  await api("POST", "/authz/user/rita/policy", { policy: "lung-reader" });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1366, height: 800 } });
  page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
});

after(async () => {
  await browser?.close();
  server?.kill();
  rmSync(dataDir, { recursive: true, force: true });
});

async function login(username) {
  await page.goto(`${base}/`);
  await page.getByLabel("User name").fill(username);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "Projects" }).waitFor();
}

test("the bootstrap login link opens the portal as admin, once", async () => {
  await page.goto(loginLink);
  await page.getByRole("heading", { name: "Projects" }).waitFor();
  assert.equal(await page.locator("#who span").textContent(), "admin");
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  const again = await page.goto(loginLink);
  assert.equal(again.status(), 401, "a used link is refused");
});

test("a wrong password is refused on the login page", async () => {
  await page.goto(`${base}/`);
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  await shot("01-login");
  await page.getByLabel("User name").fill("alice");
  await page.getByLabel("Password").fill("wrong");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("alert").filter({ hasText: "Invalid username or password" }).waitFor();
});

test("log in and see the readable projects", async () => {
  await login("alice");
  await page.locator('[data-project="demo-lung"]').waitFor();
  await shot("02-projects");
});

test("a file with an error shows the error row and writes nothing", async () => {
  await page.goto(`${base}/#/submit/demo-lung`);
  const file = tsv("bad.tsv", [
    ["type", "submitter_id", "study_title", "study_design", "projects.code"],
    ["study", "study-ok", "A study", "Observational", "lung"],
    ["study", "study-bad", "Another study", "Not a design", "lung"],
  ]);
  await page.locator('input[type="file"]').setInputFiles(file);
  await page.getByRole("button", { name: "Submit" }).click();
  const errors = page.locator("table.errors tbody tr");
  await errors.first().waitFor();
  assert.equal(await errors.count(), 1);
  const cells = await errors.first().locator("td").allTextContents();
  assert.equal(cells[0], "2", "the second record is the bad one");
  assert.equal(cells[1], "study-bad");
  assert.match(cells[3], /study_design/);
  await shot("03-submit-error");
  const data = await api("POST", "/api/v0/submission/graphql", { query: '{ _study_count(project_id: "demo-lung") }' });
  assert.equal(data.data._study_count, 0, "nothing was written");
});

test("a valid file is validated, then submitted", async () => {
  await page.goto(`${base}/#/submit/demo-lung`);
  const studies = tsv("studies.tsv", [
    ["type", "submitter_id", "study_title", "study_design", "projects.code"],
    ["study", "study-1", "Lung study", "Observational", "lung"],
  ]);
  await page.locator('input[type="file"]').setInputFiles(studies);
  await page.getByRole("button", { name: "Validate only" }).click();
  await page.getByText("Nothing was written.").waitFor();
  await page.getByRole("button", { name: "Submit" }).click();
  await page.getByText("Submitted 1 records").waitFor();
  const subjects = [["type", "submitter_id", "species", "studies.submitter_id"]];
  for (let i = 1; i <= 30; i++) subjects.push(["subject", `subject-${String(i).padStart(2, "0")}`, "Homo sapiens", "study-1"]);
  await page.locator('input[type="file"]').setInputFiles(tsv("subjects.tsv", subjects));
  await page.getByRole("button", { name: "Submit" }).click();
  await page.getByText("Submitted 30 records").waitFor();
  await shot("04-submit-ok");
});

test("the project graph toggles between types with data and the whole dictionary", async () => {
  await page.goto(`${base}/#/project/demo-lung`);
  const nodes = page.locator("svg.graph a.node");
  await nodes.first().waitFor();
  const withData = await nodes.count();
  assert.equal(withData, 4, "program, project, study, subject");
  assert.equal(await page.locator('svg.graph a.node[data-node="subject"] text.count').textContent(), "30");
  await shot("05-project-graph");
  await page.getByLabel(/full dictionary/).check();
  await page.waitForFunction((n) => document.querySelectorAll("svg.graph a.node").length > n, withData);
  await shot("06-project-graph-full");
  await page.locator('svg.graph a.node[data-node="subject"]').click();
  await page.getByRole("heading", { name: "Browse records" }).waitFor();
});

test("browse a node: page, sort, search, view, download TSV, delete", async () => {
  await page.goto(`${base}/#/browse/demo-lung/subject`);
  const caption = page.locator("table.data caption");
  await caption.filter({ hasText: "30 subject records" }).waitFor();
  const rows = page.locator(".records tbody tr");
  assert.equal(await rows.count(), 25, "the first page holds 25 rows");
  await page.getByRole("button", { name: "Next" }).click();
  await page.getByText("Page 2 of 2").waitFor();
  assert.equal(await rows.count(), 5);
  await page.getByRole("button", { name: "Previous" }).click();
  await page.getByRole("button", { name: /^submitter_id/ }).click();
  await page.locator('th[aria-sort="descending"]').waitFor();
  await page.waitForFunction(() => document.querySelector(".records tbody tr")?.textContent.includes("subject-30"));
  await page.getByLabel("Search submitter_id or id").fill("subject-0");
  await caption.filter({ hasText: "9 subject records" }).waitFor();
  await shot("07-browse");

  await rows.first().getByRole("button").first().click();
  await page.locator(".detail dl").waitFor();
  assert.match(await page.locator(".detail").textContent(), /Homo sapiens/);

  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "Download TSV" }).click()]);
  const text = readFileSync(await download.path(), "utf8");
  const lines = text.trim().split("\n");
  assert.match(lines[0], /submitter_id/);
  assert.equal(lines.length, 31, "header and all 30 subjects");

  page.once("dialog", (d) => d.accept());
  await page.getByLabel("Select subject-09").check();
  await page.getByRole("button", { name: "Delete selected (1)" }).click();
  await page.getByText("Deleted 1 record(s).").waitFor();
  await caption.filter({ hasText: "8 subject records" }).waitFor();
  await shot("08-browse-deleted");
});

test("deleting a record with dependents shows the server's refusal", async () => {
  await page.goto(`${base}/#/browse/demo-lung/study`);
  await page.locator("table.data caption").filter({ hasText: "1 study records" }).waitFor();
  page.once("dialog", (d) => d.accept());
  await page.getByLabel("Select study-1").check();
  await page.getByRole("button", { name: "Delete selected (1)" }).click();
  const notice = page.locator("#status .notice.error");
  await notice.waitFor();
  assert.match(await notice.textContent(), /Nothing was deleted/);
  await shot("09-delete-refused");
});

test("upload two files from the browser, map them, open a file page, download one, delete an upload", async () => {
  await page.goto(`${base}/#/files`);
  await page.getByRole("heading", { name: "My files", exact: true }).waitFor();
  // One file in a single PUT, one above the multipart threshold (8 MiB) in two parts.
  const small = join(dataDir, "notes.txt");
  writeFileSync(small, "clinical notes\n".repeat(1000));
  const big = join(dataDir, "scan.bin");
  const bigBytes = Buffer.alloc((8 << 20) + 4096);
  for (let i = 0; i < bigBytes.length; i++) bigBytes[i] = (i * 7) % 251;
  writeFileSync(big, bigBytes);
  await page.getByLabel("Files to upload").setInputFiles([small, big]);
  await page.locator("ul.uploads li", { hasText: "notes.txt" }).getByText("Done").waitFor();
  await page.locator("ul.uploads li", { hasText: "scan.bin" }).getByText("Done").waitFor({ timeout: 60000 });
  assert.equal(await page.getByRole("button", { name: /^Retry/ }).count(), 0, "no retry offered for finished uploads");
  assert.equal(await page.locator('ul.uploads progress[aria-label="Upload progress of scan.bin"]').evaluate((p) => p.value), 1);

  // Map my files: both listed with size and MD5, mapped to clinical_file records of study-1.
  const unmapped = page.locator(".unmapped table tbody tr");
  await page.locator(".unmapped caption").filter({ hasText: "2 unmapped upload(s)" }).waitFor();
  const md5 = createHash("md5").update(bigBytes).digest("hex");
  assert.ok((await unmapped.filter({ hasText: "scan.bin" }).textContent()).includes(md5), "the MD5 is shown at once");
  await shot("14-my-files");
  await page.getByLabel("Select notes.txt").check();
  await page.getByLabel("Select scan.bin").check();
  await page.getByLabel("Project", { exact: true }).selectOption("demo-lung");
  await page.getByLabel("Data-file type").selectOption("clinical_file");
  await page.getByLabel("Link", { exact: true }).selectOption("studies");
  await page.getByLabel("Linked record (submitter_id)").fill("study-1");
  await page.getByRole("button", { name: "Map selected" }).click();
  await page.getByText("No unmapped uploads.").waitFor();
  const files = await api("POST", "/api/v0/submission/graphql", {
    query: '{ clinical_file(project_id: "demo-lung", order_by_asc: "file_name") { file_name object_id md5sum } }',
  });
  assert.deepEqual(files.data.clinical_file.map((f) => f.file_name), ["notes.txt", "scan.bin"]);
  const scan = files.data.clinical_file[1];
  assert.equal(scan.md5sum, md5);

  // Browse shows a Download button per data-file row; the file page shows the metadata.
  await page.goto(`${base}/#/browse/demo-lung/clinical_file`);
  await page.getByRole("link", { name: "Download scan.bin" }).waitFor();
  await page.goto(`${base}/files/${scan.object_id}`);
  await page.getByRole("heading", { name: "scan.bin" }).waitFor();
  assert.match(await page.locator("dl.file-metadata").textContent(), new RegExp(md5));
  assert.match(await page.locator("ul.linked").textContent(), /studies: study-1/);
  await shot("15-file-page");
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "Download", exact: true }).click()]);
  assert.ok(readFileSync(await download.path()).equals(bigBytes), "the download is the upload, byte for byte");

  // An upload that is not wanted is deleted from the list, bytes and record.
  await page.goto(`${base}/#/files`);
  const stray = join(dataDir, "stray.txt");
  writeFileSync(stray, "not wanted");
  await page.getByLabel("Files to upload").setInputFiles([stray]);
  await page.locator("ul.uploads li", { hasText: "stray.txt" }).getByText("Done").waitFor();
  const strayGuid = await page.locator("ul.uploads li", { hasText: "stray.txt" }).getAttribute("data-guid");
  await page.getByLabel("Select stray.txt").check();
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Delete selected uploads" }).click();
  await page.getByText("Deleted 1 upload(s).").waitFor();
  const gone = await fetch(`${base}/index/index/${strayGuid}`);
  assert.equal(gone.status, 404, "the record is gone");
});

test("GraphiQL runs a query with the session", async () => {
  await page.goto(`${base}/#/query`);
  await page.locator(".graphiql-container").waitFor();
  await page.locator(".graphiql-query-editor .CodeMirror").click();
  await page.keyboard.press("Control+A");
  await page.keyboard.type("{ _subject_co");
  // Autocomplete comes from the live schema.
  await page.locator(".CodeMirror-hint", { hasText: "_subject_count" }).first().waitFor();
  await page.keyboard.press("Escape");
  await page.keyboard.press("Control+A");
  await page.keyboard.type('{ _subject_count(project_id: "demo-lung") }');
  await page.locator(".graphiql-execute-button").click();
  await page.locator(".graphiql-response").filter({ hasText: '"_subject_count": 29' }).waitFor();
  await shot("10-graphiql");
  await page.getByRole("button", { name: /Documentation Explorer/ }).click();
  await page.locator(".graphiql-doc-explorer").getByText("Root", { exact: true }).first().waitFor();
});

test("the dictionary lists node types with properties and templates", async () => {
  await page.goto(`${base}/#/dictionary`);
  const subject = page.locator("details#node-subject");
  await subject.locator("summary").click();
  await subject.getByText("species", { exact: true }).waitFor();
  assert.ok(await subject.getByRole("link", { name: "TSV template" }).isVisible());
  await shot("11-dictionary");
});

test("create an API key, download credentials.json, use it, revoke it", async () => {
  await page.goto(`${base}/#/profile`);
  await page.getByRole("button", { name: "Create API key" }).click();
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "Download credentials.json" }).click(),
  ]);
  assert.equal(download.suggestedFilename(), "credentials.json");
  const credentials = JSON.parse(readFileSync(await download.path(), "utf8"));
  assert.deepEqual(Object.keys(credentials).sort(), ["api_key", "key_id"]);
  const exchanged = await exchange(credentials);
  assert.equal(exchanged.status, 200, "the downloaded key mints an access token");
  await page.locator(`tr:has-text("${credentials.key_id}")`).waitFor();
  await shot("12-profile");
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: `Revoke key ${credentials.key_id}` }).click();
  await page.getByText(`Revoked key ${credentials.key_id}.`).waitFor();
  assert.equal((await exchange(credentials)).status, 401, "a revoked key mints nothing");
});

test("a reader sees no submit or delete controls, and logout ends the session", async () => {
  await page.goto(`${base}/user/logout?next=/`);
  await page.getByRole("heading", { name: "Log out?" }).waitFor();
  await page.getByRole("button", { name: "Log out" }).click();
  await login("rita");
  await page.goto(`${base}/#/browse/demo-lung/subject`);
  await page.locator("table.data caption").filter({ hasText: "subject records" }).waitFor();
  assert.equal(await page.getByRole("link", { name: "Submit" }).count(), 0);
  assert.equal(await page.getByRole("button", { name: /Delete selected/ }).count(), 0);
  assert.equal(await page.locator('.records input[type="checkbox"]').count(), 0);
  await shot("13-reader-browse");
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  const status = await page.evaluate(async () => (await fetch("/user/user")).status);
  assert.equal(status, 401);
});

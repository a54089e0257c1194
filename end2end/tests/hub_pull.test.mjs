// The models page's "Pull from the Hugging Face Hub" form in a real browser,
// against a local stand-in for the Hub (the network is closed in tests)
// that serves the shipped SmolLM2 GGUF as a GGUF repo, throttled so the
// progress bar has something to show.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { defaultModel, launchBrowser, newPage, screenshot, startServer } from "./support.mjs";

const REPO = "test-org/SmolLM2-135M-GGUF";
const REPO_NOJS = "test-org/SmolLM2-nojs";
const REPO_NEW_RUN = "test-org/SmolLM2-new-run";
// Served only once `hubFlaky.up` is set: its first pull fails.
const REPO_FLAKY = "test-org/SmolLM2-flaky";
const hubFlaky = { up: false };
const FILE = "SmolLM2-135M-Instruct.Q4_1.gguf";
const COMMIT = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";

let hub;
let server;
let browser;
const requests = { info: 0, files: 0 };

/** The two Hub endpoints hf-hub uses, with the headers it reads. */
function startHub(bytes) {
  const etag = createHash("sha256").update(bytes).digest("hex");
  const http = createServer(async (request, response) => {
    // The same file under other repo ids, for pulls that start cold.
    const asked = decodeURIComponent(request.url.split("?")[0]);
    if (asked.includes(REPO_FLAKY) && !hubFlaky.up) {
      response.writeHead(503);
      response.end("Service Unavailable");
      return;
    }
    const url = asked
      .replace(REPO_FLAKY, REPO)
      .replace(REPO_NOJS, REPO)
      .replace(REPO_NEW_RUN, REPO);
    if (url.startsWith(`/api/models/${REPO}/revision/`)) {
      requests.info += 1;
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify({ id: REPO, sha: COMMIT, siblings: [{ rfilename: FILE, size: bytes.length }] }));
      return;
    }
    const resolve = `/${REPO}/resolve/`;
    if (!url.startsWith(resolve) || !url.endsWith(`/${FILE}`)) {
      requests.info += url.startsWith("/api/") ? 1 : 0;
      response.writeHead(401, { "x-error-code": "RepositoryNotFound" });
      response.end("Repository Not Found");
      return;
    }
    requests.files += 1;
    const match = /bytes=(\d+)-(\d+)/.exec(request.headers.range ?? "");
    const start = match ? Number(match[1]) : 0;
    const end = Math.min(match ? Number(match[2]) : bytes.length - 1, bytes.length - 1);
    response.writeHead(206, {
      etag: `"${etag}"`,
      "x-repo-commit": COMMIT,
      "content-range": `bytes ${start}-${end}/${bytes.length}`,
      "content-length": end - start + 1,
    });
    // About 40 MB/s: the 94 MB file takes a few seconds.
    for (let at = start; at <= end; at += 1 << 20) {
      response.write(bytes.subarray(at, Math.min(at + (1 << 20), end + 1)));
      await new Promise((done) => setTimeout(done, 25));
    }
    response.end();
  });
  return new Promise((resolve) => {
    http.listen(0, "127.0.0.1", () => resolve({ http, url: `http://127.0.0.1:${http.address().port}` }));
  });
}

before(async () => {
  hub = await startHub(readFileSync(defaultModel));
  const cache = mkdtempSync(path.join(tmpdir(), "loralab-e2e-hf-"));
  server = await startServer([], { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_HUB_OFFLINE: "" });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  hub?.http.close();
});

test("a repo id typed on the models page is pulled with live progress and listed", async () => {
  const page = await newPage(browser);
  // pulls.js runs under the page's Content-Security-Policy without a complaint.
  const problems = [];
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(message.text());
  });
  page.on("pageerror", (error) => problems.push(error.message));
  await page.goto(server.baseUrl + "/models");
  await page.locator("#pull-model input[name=repo]").fill(`${REPO}/${FILE}`);
  await page.locator("#pull").click();
  const pull = page.locator("#pull-1");
  await pull.waitFor();
  // Live: the bar moves while the page stays put (SSE), before the end.
  await page.waitForFunction(() => {
    const bar = document.querySelector("#pull-1 .progress > span");
    const width = parseFloat(bar?.style.width ?? "0");
    return width > 0 && width < 100;
  }, null, { timeout: 60_000 });
  assert.match(await pull.locator(".pull-bytes").textContent(), / of 93\.8 MiB, [\d.]+ MiB\/s$/);
  await screenshot(page, "models-pull-running");

  // Done: pulls.js reloads the page, which shows the outcome and the model.
  await page.locator("#pull-1 .pull-outcome").waitFor({ timeout: 120_000 });
  assert.equal(await pull.locator(".status").textContent(), "done");
  assert.equal(await pull.locator(".progress > span").getAttribute("style"), "width: 100.0%;");
  assert.match(await pull.locator(".pull-bytes").textContent(), /^93\.8 MiB of 93\.8 MiB/);
  assert.match(await pull.locator(".pull-outcome").textContent(), new RegExp(`Registered as ${REPO}/${FILE}`));
  const row = page.locator("#models tr", { hasText: `${REPO}/${FILE}` });
  await row.waitFor();
  const cells = await row.locator("td").allTextContents();
  assert.deepEqual(cells.slice(0, 6), [`${REPO}/${FILE}`, "hub", "llama", "135M", "Q4_1", "93.8 MiB"]);
  assert.match(cells[6], new RegExp(`models--test-org--SmolLM2-135M-GGUF/snapshots/${COMMIT}/${FILE}$`));
  await screenshot(page, "models-pull-done");
  assert.deepEqual(problems, []);

  // The new-run form offers it.
  await page.goto(server.baseUrl + "/runs/new");
  const options = await page.locator("select[name='form[model]'] option, select[name=model] option").allTextContents();
  assert.ok(options.some((text) => text.includes(`${REPO}/${FILE}`)), options.join(" | "));

  // Pulled again: everything is in the cache, no file is requested.
  const before = requests.files;
  await page.goto(server.baseUrl + "/models");
  await page.locator("#pull-model input[name=repo]").fill(`${REPO}/${FILE}`);
  await page.locator("#pull").click();
  await page.locator("#pull-2 .pull-outcome").waitFor({ timeout: 60_000 });
  assert.match(await page.locator("#pull-2 .pull-bytes").textContent(), /all from the cache$/);
  assert.equal(requests.files, before);
});

test("without JavaScript the form posts and the page follows the pull by reloading", async () => {
  const page = await newPage(browser, { javaScriptEnabled: false });
  await page.goto(server.baseUrl + "/models");
  await page.locator("#pull-model input[name=repo]").fill(`${REPO_NOJS}/${FILE}`);
  await page.locator("#pull").click();
  await page.waitForURL(/\/models#pull-\d+$/);
  const id = page.url().split("#pull-")[1];
  const pull = page.locator(`#pull-${id}`);
  assert.equal(await pull.locator(".status").textContent(), "running");
  // The <noscript> refresh brings the end without a click.
  await pull.locator(".pull-outcome").waitFor({ timeout: 120_000 });
  assert.equal(await pull.locator(".status").textContent(), "done");
  assert.match(await pull.locator(".pull-bytes").textContent(), /^93\.8 MiB of 93\.8 MiB/);
  await page.locator("#models tr", { hasText: `${REPO_NOJS}/${FILE}` }).waitFor();
});

test("the new-run page pulls a model it does not list, then picks it and starts a run", async () => {
  const page = await newPage(browser);
  await page.goto(server.baseUrl + "/runs/new");
  const modelSelect = page.locator("select[name='form[model]']");
  const listed = await modelSelect.locator("option").allTextContents();
  assert.ok(!listed.includes(`${REPO_NEW_RUN}/${FILE}`), listed.join(" | "));
  await page.locator("#pull-on-new-run summary").click();
  await page.locator("#pull-on-new-run input[name=repo]").fill(`${REPO_NEW_RUN}/${FILE}`);
  await page.locator("#pull-on-new-run button[type=submit]").click();
  await page.waitForURL(/\/runs\/new\?pull=\d+$/);
  // pulls.js follows the pull and reloads the page when it ends.
  await page.locator("#pulls .pull-outcome").waitFor({ timeout: 120_000 });
  assert.equal(await page.locator("#pulls .status").textContent(), "done");
  assert.match(await page.locator("#pulls .pull-outcome").textContent(), /picked as the base model below/);
  assert.equal(await modelSelect.inputValue(), `${REPO_NEW_RUN}/${FILE}`);
  await screenshot(page, "new-run-pulled");

  await page.locator("select[name='form[preset]']").selectOption("quick");
  await page.locator("#start").click();
  await page.waitForURL(/\/runs\/\d+$/);
  const run = await (await fetch(`${server.baseUrl}/api/runs/${page.url().split("/").pop()}`)).json();
  assert.equal(run.model, `${REPO_NEW_RUN}/${FILE}`);
  await fetch(`${server.baseUrl}/api/runs/${run.id}/stop`, { method: "POST" });
});

test("a failed pull is retried or dismissed from the models page", { timeout: 180_000 }, async () => {
  const page = await newPage(browser);
  const pullOnce = async (repo) => {
    await page.goto(server.baseUrl + "/models");
    await page.locator("#pull-model input[name=repo]").fill(repo);
    await Promise.all([page.waitForURL(/\/models#pull-\d+$/), page.locator("#pull").click()]);
    return page.url().split("#pull-")[1];
  };
  const failed = await pullOnce(`${REPO_FLAKY}/${FILE}`);
  await page.locator(`#pull-${failed} .pull-retry`).waitFor({ timeout: 60_000 });
  assert.equal(await page.locator(`#pull-${failed} .status`).textContent(), "failed");

  hubFlaky.up = true;
  await Promise.all([page.waitForURL(/\/models#pull-\d+$/), page.locator(`#pull-${failed} .pull-retry`).click()]);
  const retried = page.url().split("#pull-")[1];
  assert.notEqual(retried, failed);
  assert.equal(await page.locator(`#pull-${failed}`).count(), 0, "the retry takes the failed pull's place");
  await page.locator(`#pull-${retried} .pull-outcome`).waitFor({ timeout: 120_000 });
  assert.equal(await page.locator(`#pull-${retried} .status`).textContent(), "done");
  assert.equal(await page.locator(`#pull-${retried} .pull-retry`).count(), 0);

  const missing = await pullOnce("test-org/no-such-repo");
  await page.locator(`#pull-${missing} .pull-dismiss`).waitFor({ timeout: 60_000 });
  await Promise.all([page.waitForURL(/\/models$/), page.locator(`#pull-${missing} .pull-dismiss`).click()]);
  assert.equal(await page.locator(`#pull-${missing}`).count(), 0);
  assert.equal(await page.locator(`#pull-${retried}`).count(), 1, "other pulls stay");
});

// A large dataset's first look: its page says how far the model's tokenizer
// is and reloads itself (no JavaScript needed) until the figures are there;
// they are stored, so the next visit shows them at once.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { launchBrowser, newPage, screenshot, startTinyServer } from "./support.mjs";

let server;
let browser;

before(async () => {
  server = await startTinyServer("loralab-e2e-dataset-progress-");
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const EXAMPLES = 60_000;

test("a large dataset's page shows the tokenization's progress, then its figures", { timeout: 300_000 }, async () => {
  const folder = mkdtempSync(path.join(tmpdir(), "loralab-e2e-large-"));
  const file = path.join(folder, "large.jsonl");
  let text = "";
  for (let i = 0; i < EXAMPLES; i++) {
    text += JSON.stringify({ prompt: `What is item ${i} of the hold?`, completion: `Item ${i} be rum, matey.` }) + "\n";
  }
  writeFileSync(file, text);
  const page = await newPage(browser, { javaScriptEnabled: false });
  await page.goto(server.baseUrl + "/datasets");
  await page.fill("#upload-dataset input[name=name]", "large");
  await page.setInputFiles("#upload-dataset input[name=file]", file);
  await Promise.all([page.waitForURL(/\/datasets\/\d+$/), page.click("#upload")]);
  const pageUrl = page.url();

  const progress = page.locator("#inspection-progress progress");
  assert.equal(await progress.count(), 1, "a first look at 60,000 examples takes a while");
  assert.equal(await page.locator(".toolbar .status").textContent(), "tokenizing");
  assert.equal(Number(await progress.getAttribute("max")), EXAMPLES);
  assert.match(await page.locator("#inspection-progress").textContent(), /Tokenizing with tiny:\s+[\d,]+ of 60,000 examples/);
  await screenshot(page, "dataset-first-inspection");

  // The page reloads itself until the figures come.
  await page.locator(".toolbar .status", { hasText: "ready" }).waitFor({ timeout: 240_000 });
  assert.equal(page.url(), pageUrl);
  assert.equal(await page.locator("#inspection-progress").count(), 0);
  const trainRow = await page.locator("#splits tbody tr").first().textContent();
  assert.match(trainRow, /^train/);
  // 60,000 lines, a tenth held out for validation and a tenth for test.
  assert.match(trainRow, /^traintrain\.jsonl48000/, trainRow);

  // Stored: a new visit has the figures at once.
  const again = await newPage(browser, { javaScriptEnabled: false });
  await again.goto(pageUrl);
  assert.equal(await again.locator(".toolbar .status").textContent(), "ready");
  assert.equal(await again.locator("#inspection-progress").count(), 0);
});

// A large dataset's first look: its page says how far the model's tokenizer
// is and reloads itself (no JavaScript needed) until the figures are there;
// they are stored, so the next visit shows them at once.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { execFileSync } from "node:child_process";
import { fixture, launchBrowser, newPage, screenshot, startIn } from "./support.mjs";

let server;
let browser;

before(async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), "loralab-e2e-dataset-progress-"));
  execFileSync(fixture, [dataDir]);
  // The page shows the progress at once rather than after 1.5 s, in which
  // an idle machine may have tokenized all of it.
  server = await startIn(dataDir, [], { LORALAB_DATASET_PAGE_WAIT_MS: "0" });
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

  // With no wait, the first answer is how far the tokenizer is.
  assert.equal(await page.locator("#inspection-progress").count(), 1, "a first look at 60,000 examples takes a while");
  assert.equal(await page.locator(".toolbar .status").textContent(), "tokenizing");
  assert.match(
    await page.locator("#inspection-progress").textContent(),
    /Reading the files for tiny\.\.\.|Tokenizing with tiny:\s+[\d,]+ of 60,000 examples/,
  );
  // Once the files are read, the count is of every example (unless it is
  // already done, which an idle machine may manage in a second).
  const counting = await newPage(browser, { javaScriptEnabled: false });
  for (let i = 0; i < 50; i++) {
    await counting.goto(pageUrl);
    const progress = counting.locator("#inspection-progress progress");
    if ((await progress.count()) === 1) {
      assert.equal(Number(await progress.getAttribute("max")), EXAMPLES);
      assert.match(await counting.locator("#inspection-progress").textContent(), /Tokenizing with tiny:\s+[\d,]+ of 60,000 examples/);
      await screenshot(counting, "dataset-first-inspection");
      break;
    }
    if ((await counting.locator("#inspection-progress").count()) === 0) break;
  }

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

// Page titles, and clone as a faithful copy: a run made through the API with settings no
// preset has (report every step, 2 validation batches, scale 10, dropout,
// a seed, early stopping, keep_checkpoints), cloned on the new-run page and submitted unchanged, gets the
// original's config key for key, with JavaScript on and off.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { jsonApi, launchBrowser, newPage, startTinyServer, trainTiny } from "./support.mjs";

let server;
let browser;
let api;
let original;

before(async () => {
  server = await startTinyServer("loralab-e2e-clone-");
  browser = await launchBrowser();
  api = jsonApi(server.baseUrl);
  original = await trainTiny(api, {
    name: "original",
    iters: 6,
    steps_per_report: 1,
    steps_per_eval: 3,
    val_batches: 2,
    save_every: 3,
    learning_rate: 2e-4,
    seed: 9,
    fine_tune_type: "dora",
    lora_parameters: { rank: 4, scale: 10.0, dropout: 0.05 },
    early_stopping: { patience: 4, min_delta: 0.01 },
    keep_checkpoints: 2,
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

for (const javaScriptEnabled of [true, false]) {
  test(`an unchanged clone has the original's config (JavaScript ${javaScriptEnabled ? "on" : "off"})`, async () => {
    const page = await newPage(browser, { javaScriptEnabled });
    await page.goto(`${server.baseUrl}/runs/new?clone=${original}`);
    assert.equal(await page.locator("input[name='form[name]']").inputValue(), "original (copy)");
    await Promise.all([page.waitForURL(/\/runs\/\d+$/), page.click("#start")]);
    const clone = Number(page.url().match(/\/runs\/(\d+)$/)[1]);
    assert.notEqual(clone, original);
    const [from, copy] = await Promise.all([
      api("GET", `/api/runs/${original}`),
      api("GET", `/api/runs/${clone}`),
    ]);
    assert.equal(copy.name, "original (copy)");
    assert.equal(from.config.steps_per_report, 1);
    assert.equal(from.config.lora_parameters.dropout, 0.05);
    assert.deepEqual(from.config.early_stopping, { patience: 4, min_delta: 0.01 });
    assert.equal(from.config.keep_checkpoints, 2);
    assert.deepEqual(copy.config, from.config);
  });
}

test("each page has its own title, also when rendered without JavaScript", async () => {
  const page = await newPage(browser, { javaScriptEnabled: false });
  const titles = {};
  for (const url of ["/", "/runs/new", `/runs/${original}`, "/models", "/datasets", "/compare", "/exports", "/runs/999"]) {
    await page.goto(server.baseUrl + url);
    titles[url] = await page.title();
  }
  assert.deepEqual(titles, {
    "/": "Runs · Loralab",
    "/runs/new": "New run · Loralab",
    [`/runs/${original}`]: "original · Loralab",
    "/models": "Models · Loralab",
    "/datasets": "Datasets · Loralab",
    "/compare": "Compare adapters · Loralab",
    "/exports": "Exports · Loralab",
    "/runs/999": "No such run · Loralab",
  });
});

test("the new-run form shows each preset's values, QLoRA bits only for QLoRA, and brings Check's verdict into view", async () => {
  const page = await newPage(browser);
  await page.goto(server.baseUrl + "/runs/new");
  const placeholder = (field) => page.locator(`input[name="form[${field}]"]`).getAttribute("placeholder");
  assert.equal(await page.locator("#preset").inputValue(), "balanced");
  assert.equal(await placeholder("iters"), "300");
  assert.equal(await placeholder("save_every"), "50");
  await page.selectOption("#preset", "thorough");
  assert.equal(await placeholder("iters"), "1000");
  assert.equal(await placeholder("rank"), "16");
  assert.equal(await placeholder("num_layers"), "-1");
  assert.equal(await placeholder("learning_rate"), "5e-5");
  assert.equal(await placeholder("patience"), "5");
  assert.equal(await placeholder("keep_checkpoints"), "3");
  const bits = page.locator("label.qlora-bits");
  assert.equal(await bits.isVisible(), false);
  await page.selectOption('select[name="form[fine_tune]"]', "qlora");
  assert.equal(await bits.isVisible(), true);
  await page.selectOption('select[name="form[fine_tune]"]', "dora");
  assert.equal(await bits.isVisible(), false);
  await page.selectOption('select[name="form[model]"]', "tiny");
  await page.click("#check");
  await page.waitForSelector("#run-check");
  assert.ok(page.url().endsWith("#run-check"), page.url());
  const verdict = await page.locator("#memory-verdict").boundingBox();
  assert.ok(verdict.y >= 0 && verdict.y < 800, `the verdict is in view: ${JSON.stringify(verdict)}`);
  // Thorough keeps 3 checkpoints plus the latest: 4 on disk at most.
  assert.match(await page.locator("#disk-estimate td.num").textContent(), /^4 x [\d.]+ KiB kept \(at most\) = [\d.]+ KiB$/);
  // The checked form keeps its preset, and so its placeholders.
  assert.equal(await placeholder("iters"), "1000");

  // Without JavaScript: the server's placeholders, and the CSS hides the bits.
  const plain = await newPage(browser, { javaScriptEnabled: false });
  await plain.goto(server.baseUrl + "/runs/new");
  assert.equal(await plain.locator('input[name="form[iters]"]').getAttribute("placeholder"), "300");
  assert.equal(await plain.locator("label.qlora-bits").isVisible(), false);
});

test("a refused form comes back with its reason in words, in the page and the address", async () => {
  const page = await newPage(browser, { javaScriptEnabled: false });
  await page.goto(server.baseUrl + "/runs/new");
  await page.selectOption('select[name="form[model]"]', "tiny");
  await page.fill('input[name="form[num_layers]"]', "99");
  await page.click("#start");
  await page.waitForURL(/error=/);
  const error = new URL(page.url()).searchParams.get("error");
  assert.match(error, /^num_layers: is 99 but the model only has \d+ layers$/);
  assert.equal((await page.locator('[role="alert"]').textContent()).trim(), error);
});

test("a dataset with problems is replaced from its page by the fixed file, without JavaScript", async () => {
  const folder = mkdtempSync(path.join(tmpdir(), "loralab-e2e-replace-"));
  const broken = path.join(folder, "notes.jsonl");
  const fixed = path.join(folder, "fixed.jsonl");
  const example = (n) => JSON.stringify({ prompt: `q${n}`, completion: `a${n}` }) + "\n";
  writeFileSync(broken, example(1) + "not json\n");
  writeFileSync(fixed, example(1) + example(2) + example(3));
  const page = await newPage(browser, { javaScriptEnabled: false });
  await page.goto(server.baseUrl + "/datasets");
  await page.fill("#upload-dataset input[name=name]", "notes");
  await page.setInputFiles("#upload-dataset input[name=file]", broken);
  await Promise.all([page.waitForURL(/\/datasets\/\d+$/), page.click("#upload")]);
  const pageUrl = page.url();
  assert.match(await page.locator(".toolbar .status").textContent(), /^\d+ problems?$/);
  assert.match(await page.locator("#problems").textContent(), /notes\.jsonl:2|train\.jsonl:2/);

  await page.setInputFiles("#replace-dataset input[name=file]", fixed);
  await Promise.all([page.waitForNavigation(), page.click("#replace")]);
  assert.equal(page.url(), pageUrl, "the same dataset's page");
  assert.equal(await page.locator(".toolbar .status").textContent(), "ready");
  assert.equal(await page.locator("#replace-dataset").count(), 0);
  assert.equal(await page.locator("text=Fine-tune on it").count(), 1);
  const datasets = await api("GET", "/api/datasets");
  const notes = datasets.filter((d) => d.name === "notes");
  assert.equal(notes.length, 1);
  assert.equal(notes[0].problems, 0);
  assert.equal(notes[0].train_count + notes[0].valid_count + notes[0].test_count, 3);
});

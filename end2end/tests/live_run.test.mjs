// The run page while a run is live: the step total, ETA, checkpoints (with
// the best mark), validation losses and the log follow the stream; without
// JavaScript the page refreshes itself until the run ends. Screenshots of
// the live page early, later and at the end, light and dark.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { jsonApi, launchBrowser, newPage, screenshot, startTinyServer } from "./support.mjs";

let server;
let browser;
let api;

before(async () => {
  server = await startTinyServer("loralab-e2e-live-");
  browser = await launchBrowser();
  api = jsonApi(server.baseUrl);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const longRun = (name) =>
  api("POST", "/api/runs", {
    name,
    model: "tiny",
    dataset: "sample-ahoy",
    batch_size: 4,
    max_seq_length: 128,
    num_layers: -1,
    iters: 3000,
    steps_per_report: 10,
    steps_per_eval: 100,
    save_every: 100,
    val_batches: 1,
    lora_parameters: { rank: 4, scale: 10.0 },
  });

const stat = (page, key) => page.locator(`[data-stat="${key}"]`).textContent();

test("a live run's figures, checkpoints and log follow the stream", { timeout: 300_000 }, async () => {
  const run = await longRun("live");
  for (const colorScheme of ["light", "dark"]) {
    const page = await newPage(browser, { colorScheme });
    await page.goto(`${server.baseUrl}/runs/${run.id}`);
    if (colorScheme === "light") {
      // Before any step: the total once known, and what the worker is doing.
      await page.waitForFunction(() => /^\d+\/3000$/.test(document.querySelector('[data-stat="step"]').textContent));
      assert.ok((await stat(page, "phase")).length > 0);
    }
    await page.waitForFunction(() => document.querySelectorAll("#checkpoints tbody tr").length >= 2, null, {
      timeout: 120_000,
    });
    await screenshot(page, `live-run-early-${colorScheme}`);
    assert.equal(await page.locator("#run-status").textContent(), "running");
    assert.match(await stat(page, "eta"), /\d+ (s|min)/);
    assert.equal(await stat(page, "phase"), "training");
    assert.equal(await page.locator("#download").count(), 1, "the adapter can be downloaded as soon as one is saved");
    // Each checkpoint row has its step's validation loss; one is best.
    const rows = await page.locator("#checkpoints tbody tr").evaluateAll((rows) =>
      rows.map((row) => ({ step: Number(row.dataset.step), loss: row.cells[1].textContent, best: row.classList.contains("best") })),
    );
    assert.ok(rows.every((row) => /^\d+\.\d{3}$/.test(row.loss)), JSON.stringify(rows));
    assert.equal(rows.filter((row) => row.best).length, 1, JSON.stringify(rows));
    const log = await page.locator("#log").textContent();
    assert.match(log, /Iter \d+: Train loss \d+\.\d{3}, Learning Rate \d\.\d{3}e-\d\d, It\/sec /);
    assert.match(log, /Iter \d+: Val loss \d+\.\d{3}/);
    assert.match(log, /Iter \d+: Saved adapter weights to /);
    // The API agrees with what the page shows.
    const detail = await api("GET", `/api/runs/${run.id}`);
    const saved = detail.checkpoints.map((checkpoint) => checkpoint.step);
    for (const row of rows) assert.ok(saved.includes(row.step), `${row.step} not in ${saved}`);
    // Later: more checkpoints have come in while the page stayed open.
    const seen = rows.length;
    await page.waitForFunction((seen) => document.querySelectorAll("#checkpoints tbody tr").length >= seen + 3, seen, {
      timeout: 120_000,
    });
    await screenshot(page, `live-run-later-${colorScheme}`);
    await page.context().close();
  }
  await api("POST", `/api/runs/${run.id}/stop`);
  for (const colorScheme of ["light", "dark"]) {
    const page = await newPage(browser, { colorScheme });
    await page.goto(`${server.baseUrl}/runs/${run.id}`);
    await page.waitForFunction(() => document.querySelector("#run-status").textContent === "stopped", null, {
      timeout: 60_000,
    });
    await screenshot(page, `live-run-end-${colorScheme}`);
    await page.context().close();
  }
});

test("without JavaScript a live run's page refreshes itself until it ends", { timeout: 300_000 }, async () => {
  const run = await longRun("no script");
  const page = await newPage(browser, { javaScriptEnabled: false });
  await page.goto(`${server.baseUrl}/runs/${run.id}`);
  assert.equal(await page.locator('meta[http-equiv="refresh"]').getAttribute("content"), "5");
  const before = await stat(page, "step");
  // The page reloads itself: a later step shows without any action.
  await page.waitForEvent("load", { timeout: 15_000 });
  assert.notEqual(await stat(page, "step"), before);
  await api("POST", `/api/runs/${run.id}/stop`);
  for (let i = 0; i < 100; i++) {
    const state = await api("GET", `/api/runs/${run.id}`);
    if (state.status === "stopped") break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await page.reload();
  assert.equal(await page.locator("#run-status").textContent(), "stopped");
  assert.equal(await page.locator('meta[http-equiv="refresh"]').count(), 0, "a finished run's page stays put");
  await page.context().close();
});

test("checkpoints that keep_checkpoints deletes leave the live page's table", { timeout: 300_000 }, async () => {
  const run = await api("POST", "/api/runs", {
    name: "kept",
    model: "tiny",
    dataset: "sample-ahoy",
    batch_size: 4,
    max_seq_length: 128,
    num_layers: -1,
    iters: 3000,
    steps_per_report: 10,
    steps_per_eval: 20,
    save_every: 20,
    val_batches: 1,
    keep_checkpoints: 1,
    lora_parameters: { rank: 4, scale: 10.0 },
  });
  // Opened after the first checkpoint, so the page does not reload for it.
  for (let i = 0; i < 600; i++) {
    if ((await api("GET", `/api/runs/${run.id}`)).checkpoints.length > 0) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const page = await newPage(browser);
  await page.goto(`${server.baseUrl}/runs/${run.id}`);
  await page.evaluate(() => {
    window.removedRows = 0;
    new MutationObserver((changes) => {
      for (const change of changes) window.removedRows += change.removedNodes.length;
    }).observe(document.querySelector("#checkpoints tbody"), { childList: true });
  });
  const rows = () =>
    page.evaluate(() => [...document.querySelectorAll("#checkpoints tbody tr")].map((row) => Number(row.dataset.step)));
  let agreed = null;
  for (let i = 0; i < 600 && agreed === null; i++) {
    const [shown, listed, removed] = await Promise.all([
      rows(),
      api("GET", `/api/runs/${run.id}`).then((detail) => detail.checkpoints.map((c) => c.step)),
      page.evaluate(() => window.removedRows),
    ]);
    if (removed > 0 && JSON.stringify(shown) === JSON.stringify(listed)) agreed = shown;
    else await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.ok(agreed, "the page removed a row live and lists what the server lists");
  // The best and the latest at most.
  assert.ok(agreed.length >= 1 && agreed.length <= 2, JSON.stringify(agreed));
  await api("POST", `/api/runs/${run.id}/stop`);
  await page.context().close();
});

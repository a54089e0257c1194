// A run on two data-parallel ranks started from the new-run form without
// JavaScript: the GPUs field reaches the run's config, two worker processes
// train it (ring backend on 127.0.0.1), and the run page shows the ranks,
// tokens/s per rank, each rank's own tokens/s and peak memory (gathered by
// rank 0 after every report), the scaling, and both ranks' lines in the log.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { jsonApi, launchBrowser, newPage, screenshot, startTinyServer } from "./support.mjs";

let server;
let browser;
let api;

before(async () => {
  server = await startTinyServer("loralab-e2e-ranks-");
  browser = await launchBrowser();
  api = jsonApi(server.baseUrl);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test("the GPUs field trains on two ranks and the run page shows them", { timeout: 300_000 }, async () => {
  const page = await newPage(browser, { javaScriptEnabled: false });
  await page.goto(server.baseUrl + "/runs/new");
  await page.selectOption('select[name="form[model]"]', "tiny");
  await page.fill('input[name="form[iters]"]', "4");
  await page.fill('input[name="form[batch_size]"]', "4");
  await page.fill('input[name="form[max_seq_length]"]', "128");
  await page.fill('input[name="form[num_layers]"]', "-1");
  await page.fill('input[name="form[gpus]"]', "2");
  await Promise.all([page.waitForURL(/\/runs\/\d+$/), page.click("#start")]);
  const id = Number(page.url().match(/\/runs\/(\d+)$/)[1]);
  let run;
  for (let i = 0; i < 600; i++) {
    run = await api("GET", `/api/runs/${id}`);
    if (run.status === "done") break;
    assert.notEqual(run.status, "failed", run.failure);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.equal(run.status, "done");
  assert.equal(run.config.gpus, 2);
  await page.reload();
  assert.equal((await page.locator('[data-stat="ranks"]').textContent()).trim(), "2");
  const perRank = Number((await page.locator('[data-stat="tokens_per_sec_per_rank"]').textContent()).trim());
  const global = Number((await page.locator('[data-stat="tokens_per_sec"]').textContent()).trim());
  assert.ok(perRank > 0 && Math.abs(perRank * 2 - global) <= 1, `${perRank} x 2 vs ${global}`);
  const rows = page.locator("#ranks tbody tr");
  assert.equal(await rows.count(), 2);
  let sum = 0;
  for (let rank = 0; rank < 2; rank++) {
    const row = page.locator(`#ranks tr[data-rank="${rank}"]`);
    assert.equal((await row.locator('[data-figure="place"]').textContent()).trim(), "this machine (CPU)");
    const rate = Number((await row.locator('[data-figure="tokens_per_sec"]').textContent()).trim());
    const peak = Number.parseFloat(await row.locator('[data-figure="peak_memory_gb"]').textContent());
    assert.ok(rate > 0, `rank ${rank}: ${rate} tokens/s`);
    assert.ok(peak > 0 && peak < 8, `rank ${rank}: ${peak} GB`);
    sum += rate;
  }
  assert.ok(sum > 0.25 * global && sum < 1.25 * global, `the ranks' ${sum} tokens/s against ${global}`);
  assert.match(await page.locator('[data-stat="scaling"]').textContent(), /^\d+\.\d\dx one rank's tokens\/s \(\d+ against \d+; 2 ranks\)$/);
  await screenshot(page, "ranks-run");
  const log = await page.content();
  assert.match(log, /Iter 4: rank 0 [\d.]+ tokens\/sec, peak mem [\d.]+ GB; rank 1 /);
  assert.match(log, /\[rank 1\] Rank 1 of 2 \(ring\)/);
});

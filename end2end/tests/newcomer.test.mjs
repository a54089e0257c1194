// A newcomer's first fine-tune, in a real browser on the shipped SmolLM2:
// upload the sample dataset, start a short run, watch loss points arrive,
// stop, resume, reach done with a best checkpoint. Then the same kind of run
// created with JavaScript off. Screenshots of every page on the way.
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, test } from "node:test";
import { launchBrowser, newPage, screenshot, startServer } from "./support.mjs";

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Points drawn in a chart series, as the SVG polyline holds them. */
async function chartPoints(page, series) {
  const points = await page.locator(`#loss-chart polyline[data-series="${series}"]`).getAttribute("points");
  return points.trim() ? points.trim().split(/\s+/) : [];
}

test("upload the sample, fine-tune, watch, stop, resume, reach done", { timeout: 600_000 }, async () => {
  const page = await newPage(browser);
  await page.goto(server.baseUrl + "/models");
  assert.match(await page.locator("#models").textContent(), /SmolLM2-135M-Instruct/);
  await screenshot(page, "models");

  // Upload the sample dataset's file, as a newcomer would their own.
  await page.goto(server.baseUrl + "/datasets");
  await page.fill("input[name=name]", "my-ahoy");
  await page.setInputFiles("input[name=file]", path.join(server.dataDir, "datasets", "1", "train.jsonl"));
  await screenshot(page, "datasets");
  await Promise.all([page.waitForURL(/\/datasets\/\d+$/), page.click("#upload")]);
  assert.equal(await page.locator("h1").textContent(), "my-ahoy");
  assert.equal(await page.locator(".toolbar .status").textContent(), "ready");
  assert.match(await page.locator("#splits").textContent(), /held out of train\.jsonl/);
  assert.ok((await page.locator(".preview .seg-trained").count()) > 0, "trained tokens are marked");
  assert.ok((await page.locator(".preview .seg-masked").count()) > 0, "prompt tokens are marked");
  assert.ok((await page.locator("svg.histogram .bar").count()) > 0, "a length histogram");
  await screenshot(page, "dataset");

  // Start a short fine-tune on it from the dataset page.
  await Promise.all([page.waitForURL(/\/runs\/new\?dataset=my-ahoy$/), page.click("text=Fine-tune on it")]);
  assert.equal(await page.locator("select[name='form[dataset]']").inputValue(), "my-ahoy");
  await page.selectOption("select[name='form[preset]']", "quick");
  await page.fill("input[name='form[name]']", "first-steps");
  await page.fill("input[name='form[iters]']", "20");
  await screenshot(page, "new-run");
  await Promise.all([page.waitForURL(/\/runs\/\d+$/), page.click("#start")]);
  const runUrl = page.url();

  // Loss points arrive live (the quick preset reports every 5 steps).
  await page.waitForFunction(
    () => document.querySelector('#loss-chart polyline[data-series="train"]').getAttribute("points").trim() !== "",
    null,
    { timeout: 300_000 },
  );
  assert.ok((await chartPoints(page, "train")).length >= 1);
  await screenshot(page, "run-live");

  // Stop: the worker checkpoints, the page reloads on the "stopped" event.
  await page.click("#stop");
  await page.waitForSelector("#run-status:text('stopped')", { timeout: 300_000 });
  const stoppedAt = Number((await page.locator("[data-stat=step]").textContent()).split("/")[0]);
  assert.ok(stoppedAt >= 5 && stoppedAt < 20, `stopped at ${stoppedAt}`);

  // Resume to the end.
  await page.click("#resume");
  await page.waitForSelector("#run-status:text('done')", { timeout: 300_000 });
  assert.equal(await page.locator("[data-stat=step]").textContent(), "20/20");
  const trainPoints = await chartPoints(page, "train");
  assert.ok(trainPoints.length >= 4, `train points: ${trainPoints}`);
  assert.ok((await chartPoints(page, "valid")).length >= 2);
  const best = page.locator("#checkpoints tr.best");
  assert.equal(await best.count(), 1, "one checkpoint is marked best");
  assert.match(await best.textContent(), /best/);
  assert.ok(await page.locator("#download").isVisible());
  await screenshot(page, "run-done");

  // The same curves by trained tokens: x reaches far past the 20 steps.
  await Promise.all([page.waitForURL(/\?x=tokens(&y=\w+)?$/), page.click(".axis-choice >> text=tokens")]);
  assert.equal(await page.locator("#loss-chart svg[role=img]").getAttribute("aria-label"), "Loss by tokens");
  assert.ok(Number(await page.locator("#loss-chart").getAttribute("data-x-max")) > 100);

  await page.goto(server.baseUrl + "/");
  const row = page.locator("#runs tbody tr").first();
  assert.match(await row.textContent(), /first-steps/);
  assert.equal(await row.locator(".status").textContent(), "done");
  await screenshot(page, "runs");
  assert.ok(runUrl.endsWith("/runs/1"));
});

test("a run created and followed with JavaScript off", { timeout: 600_000 }, async () => {
  const page = await newPage(browser, { javaScriptEnabled: false });
  await page.goto(server.baseUrl + "/runs/new?dataset=sample-ahoy");
  await page.selectOption("select[name='form[preset]']", "quick");
  await page.fill("input[name='form[name]']", "no-js");
  await page.fill("input[name='form[iters]']", "10");
  await Promise.all([page.waitForURL(/\/runs\/\d+$/), page.click("#start")]);
  assert.equal(await page.locator("h1").textContent(), "no-js");

  // Without the live script, reloading is how a user follows the run.
  const deadline = Date.now() + 300_000;
  while ((await page.locator("#run-status").textContent()) !== "done") {
    assert.ok(Date.now() < deadline, "the run did not finish in time");
    await page.waitForTimeout(2000);
    await page.reload();
  }
  assert.ok((await chartPoints(page, "train")).length >= 2, "server-rendered loss points");
  assert.equal(await page.locator("#checkpoints tr.best").count(), 1);
  await screenshot(page, "run-nojs");
});

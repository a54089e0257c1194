// Runs side by side (issue 15) and charts people can read (issue 14): three
// real runs on the tiny model differing in learning rate and rank, ticked on
// the runs list, overlaid on one chart with their final figures and exactly
// the settings that differ; the chart's log scale, ticks, hover, keyboard
// and legend; a live run's curve growing on the comparison; without
// JavaScript the same page from the same form.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { jsonApi, launchBrowser, newPage, screenshot, startIn, startTinyServer, trainTiny } from "./support.mjs";

let server;
let browser;
let api;
const ids = [];

before(async () => {
  server = await startTinyServer("loralab-e2e-runs-compare-");
  browser = await launchBrowser();
  api = jsonApi(server.baseUrl);
  const common = { iters: 10, steps_per_eval: 5 };
  ids.push(await trainTiny(api, { ...common, name: "lr-1e-4-r4", learning_rate: 1e-4 }));
  ids.push(await trainTiny(api, { ...common, name: "lr-1e-3-r4", learning_rate: 1e-3 }));
  ids.push(
    await trainTiny(api, {
      ...common,
      name: "lr-1e-4-r8",
      learning_rate: 1e-4,
      lora_parameters: { rank: 8, scale: 10.0 },
    }),
  );
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const pointCount = (page, series) =>
  page.locator(`#loss-chart polyline[data-series="${series}"]`).evaluate(
    (line) => line.getAttribute("points").trim().split(/\s+/).filter(Boolean).length,
  );

test("GET /api/runs/compare: curves, figures, the differing keys, clear errors", async () => {
  const comparison = await api("GET", `/api/runs/compare?ids=${ids.join(",")}`);
  assert.deepEqual(comparison.runs.map((run) => run.summary.id), ids);
  assert.deepEqual(comparison.differences.map((d) => d.key), ["learning_rate", "lora_parameters.rank"]);
  assert.deepEqual(comparison.differences[0].values, ["0.0001", "0.001", "0.0001"]);
  assert.deepEqual(comparison.differences[1].values, ["4", "4", "8"]);
  const listed = await api("GET", "/api/runs");
  for (const run of comparison.runs) {
    const summary = listed.find((item) => item.id === run.summary.id);
    assert.equal(run.figures.status, "done");
    assert.equal(run.figures.best_val_loss, summary.best_val_loss);
    assert.equal(run.figures.last_val_loss, run.valid.at(-1).val_loss);
    assert.equal(run.train.length, 2, "reports at steps 5 and 10");
    assert.ok(run.figures.tokens_per_sec > 0 && run.figures.peak_memory_gb > 0);
    assert.ok(run.train.at(-1).elapsed_seconds > 0, "wall time of the last report");
  }
  // The checkboxes' repeated key reads the same.
  const repeated = await api("GET", `/api/runs/compare?ids=${ids[0]}&ids=${ids[1]}`);
  assert.equal(repeated.runs.length, 2);

  for (const [query, status, error] of [
    [`ids=${ids[0]}`, 422, "ids: choose 2 to 8 runs to compare (1 chosen)"],
    ["ids=1,2,3,4,5,6,7,8,9", 422, "ids: choose 2 to 8 runs to compare (9 chosen)"],
    ["ids=1,two", 422, "ids: `two` is not a run id (ids are numbers)"],
    [`ids=${ids[0]},99`, 404, "run 99 does not exist"],
  ]) {
    const response = await fetch(`${server.baseUrl}/api/runs/compare?${query}`);
    assert.equal(response.status, status, query);
    assert.equal((await response.json()).error, error);
  }
});

test("tick three runs, read them side by side, hover, keys, light and dark", { timeout: 120_000 }, async () => {
  const page = await newPage(browser);
  await page.goto(server.baseUrl + "/");
  for (const id of ids) await page.check(`#runs input[name=ids][value="${id}"]`);
  await Promise.all([page.waitForURL(/\/runs\/compare\?ids=/), page.click("#compare-runs")]);
  assert.ok(page.url().endsWith(`/runs/compare?ids=${ids.join(",")}`), page.url());
  assert.equal(await page.title(), "Compare runs lr-1e-4-r4, lr-1e-3-r4, lr-1e-4-r8 · Loralab");

  // Three overlaid train curves and three validation curves.
  for (const id of ids) {
    assert.equal(await pointCount(page, `run-${id}-train`), 2);
    assert.equal(await pointCount(page, `run-${id}-valid`), 3, "steps 0, 5 and 10");
  }
  assert.equal(await page.locator("#loss-chart .point").count(), 15);
  assert.equal(await page.locator("#loss-chart .chart-legend .legend").count(), 6);

  // The settings that differ, and nothing else.
  const keys = await page.locator("#config-diff tbody tr").evaluateAll((rows) => rows.map((row) => row.dataset.key));
  assert.deepEqual(keys, ["learning_rate", "lora_parameters.rank"]);
  assert.deepEqual(
    await page.locator('#config-diff tr[data-key="lora_parameters.rank"] td').allTextContents(),
    ["4", "4", "8"],
  );

  // Final figures as the runs list has them.
  const listed = await api("GET", "/api/runs");
  for (const id of ids) {
    const row = page.locator(`#figures tr[data-run-id="${id}"]`);
    const summary = listed.find((run) => run.id === id);
    assert.equal(await row.locator('[data-figure="best_val_loss"]').textContent(), summary.best_val_loss.toFixed(3));
    assert.equal(await row.locator('[data-figure="status"]').textContent(), "done");
    assert.match(await row.locator('[data-figure="peak_memory_gb"]').textContent(), /^\d+\.\d\d GB$/);
    assert.match(await row.locator('[data-figure="duration"]').textContent(), /^\d+ s$|min/);
  }

  // Tick labels without spurious decimals, on either scale.
  for (const scale of ["linear", "log"]) {
    await Promise.all([page.waitForURL(new RegExp(`y=${scale}`)), page.click(`.axis-choice a[data-y="${scale}"]`)]);
    assert.equal(await page.locator("#loss-chart").getAttribute("data-scale"), scale);
    const labels = await page.locator("#loss-chart .y-ticks .tick").allTextContents();
    assert.ok(labels.length >= 2, `${scale} ticks: ${labels}`);
    for (const label of labels) assert.match(label, /^\d+(\.\d*[1-9])?$/, `${scale} tick ${label}`);
    for (const label of await page.locator("#loss-chart .x-ticks .tick").allTextContents()) {
      assert.match(label, /^\d+(\.\d*[1-9])?$/, `x tick ${label}`);
    }
  }

  // Hover anywhere near a point: the nearest one shows its step and value.
  const marker = page.locator(`#loss-chart .point[data-series="run-${ids[1]}-valid"][data-step="10"]`);
  const box = await marker.boundingBox();
  await page.mouse.move(box.x + box.width / 2 + 3, box.y + box.height / 2 - 2);
  const active = page.locator("#loss-chart .point.active");
  assert.equal(await active.count(), 1);
  assert.equal(await active.getAttribute("data-step"), "10");
  const tip = active.locator(".tip");
  assert.ok(await tip.isVisible());
  const valid = (await api("GET", `/api/runs/compare?ids=${ids.join(",")}`)).runs[1].valid;
  assert.equal(await tip.textContent(), `lr-1e-3-r4 validation loss · step 10 · ${valid.at(-1).val_loss.toFixed(3)}`);
  await screenshot(page, "compare-runs-hover");
  await page.mouse.move(0, 0);

  // The keyboard: the chart is one tab stop; arrows walk the points.
  const stops = await page.locator("#loss-chart .point[tabindex='0']").count();
  assert.equal(stops, 1);
  await page.locator("#loss-chart .point[tabindex='0']").focus();
  const focused = () => page.evaluate(() => {
    const point = document.activeElement;
    return { series: point.dataset.series, step: point.dataset.step, tip: getComputedStyle(point.querySelector(".tip")).visibility };
  });
  const last = await focused();
  assert.equal(last.tip, "visible");
  await page.keyboard.press("ArrowLeft");
  const previous = await focused();
  assert.equal(previous.series, last.series);
  assert.ok(Number(previous.step) < Number(last.step), `${previous.step} < ${last.step}`);
  await page.keyboard.press("ArrowUp");
  assert.notEqual((await focused()).series, last.series);

  // Legend swatches sit on their labels' middle line.
  const offsets = await page.locator("#loss-chart .legend").evaluateAll((legends) =>
    legends.map((legend) => {
      const swatch = legend.querySelector(".swatch").getBoundingClientRect();
      const label = legend.querySelector(".legend-label").getBoundingClientRect();
      return Math.abs(swatch.top + swatch.height / 2 - (label.top + label.height / 2));
    }),
  );
  for (const offset of offsets) assert.ok(offset <= 1, `swatch off its label by ${offset}px`);

  // The outputs link opens /compare with the base and the three adapters.
  const link = page.locator("#compare-outputs a");
  assert.equal(
    await link.getAttribute("href"),
    `/compare?model=tiny&column_1=base${ids.map((id, i) => `&column_${i + 2}=run:${id}`).join("")}`,
  );
  await page.goto(server.baseUrl + `/runs/compare?ids=${ids.join(",")}`);
  await screenshot(page, "compare-runs-light");
  const dark = await newPage(browser, { colorScheme: "dark" });
  await dark.goto(server.baseUrl + `/runs/compare?ids=${ids.join(",")}&x=tokens`);
  assert.equal(await dark.locator("#loss-chart").getAttribute("data-x-axis"), "tokens");
  await screenshot(dark, "compare-runs-dark");
  await dark.context().close();

  await Promise.all([page.waitForURL(/\/compare\?model=/), page.click("#compare-outputs a")]);
  assert.equal(await page.locator("#column-1").inputValue(), "base");
  for (const [i, id] of ids.entries()) assert.equal(await page.locator(`#column-${i + 2}`).inputValue(), `run:${id}`);
  await page.context().close();
});

test("the comparison and its chart without JavaScript", { timeout: 60_000 }, async () => {
  const page = await newPage(browser, { javaScriptEnabled: false });
  await page.goto(server.baseUrl + "/");
  await page.check(`#runs input[name=ids][value="${ids[0]}"]`);
  await Promise.all([page.waitForURL(/\/runs\/compare\?ids=/), page.click("#compare-runs")]);
  assert.match(await page.locator("#compare-runs-error").textContent(), /^ids: choose 2 to 8 runs to compare \(1 chosen\)$/);

  await page.goto(server.baseUrl + "/");
  await page.check(`#runs input[name=ids][value="${ids[0]}"]`);
  await page.check(`#runs input[name=ids][value="${ids[2]}"]`);
  await Promise.all([page.waitForURL(/\/runs\/compare\?ids=/), page.click("#compare-runs")]);
  // Newest first, as the list shows them; the page puts them oldest first.
  assert.ok(page.url().endsWith(`?ids=${ids[2]}&ids=${ids[0]}`), page.url());
  assert.equal(await pointCount(page, `run-${ids[2]}-train`), 2);
  const keys = await page.locator("#config-diff tbody tr").evaluateAll((rows) => rows.map((row) => row.dataset.key));
  assert.deepEqual(keys, ["lora_parameters.rank"]);
  // Hover and focus show a point's figures with CSS alone.
  const marker = page.locator(`#loss-chart .point[data-series="run-${ids[2]}-train"]`).last();
  await marker.hover();
  assert.ok(await marker.locator(".tip").isVisible());
  assert.match(await marker.locator(".tip").textContent(), /^lr-1e-4-r8 train loss · step 10 · \d+\.\d{3}$/);
  await screenshot(page, "compare-runs-nojs");
  await page.context().close();
});

test("a run still training grows on the comparison, live", { timeout: 240_000 }, async () => {
  const run = await api("POST", "/api/runs", {
    model: "tiny",
    dataset: "sample-ahoy",
    name: "long",
    batch_size: 4,
    num_layers: -1,
    max_seq_length: 128,
    iters: 2000,
    steps_per_report: 5,
    lora_parameters: { rank: 4, scale: 10.0 },
  });
  for (let i = 0; ; i++) {
    const state = await api("GET", `/api/runs/${run.id}`);
    if (state.status === "running" && state.step >= 5) break;
    assert.ok(i < 600, `run ${run.id} did not start: ${state.status}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const page = await newPage(browser);
  await page.goto(server.baseUrl + `/runs/compare?ids=${ids[0]},${run.id}`);
  const before = await pointCount(page, `run-${run.id}-train`);
  await page.waitForFunction(
    ([key, count]) =>
      document.querySelector(`#loss-chart polyline[data-series="${key}"]`).getAttribute("points").trim().split(/\s+/).length > count + 1 &&
      document.querySelectorAll(`#loss-chart .point[data-series="${key}"]`).length > count + 1,
    [`run-${run.id}-train`, before],
    { timeout: 120_000 },
  );
  // Every marker sits inside the plot after the bounds moved.
  const outside = await page.locator("#loss-chart .point").evaluateAll((points) =>
    points.filter((p) => !(parseFloat(p.style.left) >= 0 && parseFloat(p.style.left) <= 100.001 &&
      parseFloat(p.style.top) >= 0 && parseFloat(p.style.top) <= 100.001)).length,
  );
  assert.equal(outside, 0);
  // The runs list reloads when a status changes; what is ticked stays ticked.
  const list = await newPage(browser);
  await list.goto(server.baseUrl + "/");
  await list.check(`#runs input[name=ids][value="${ids[0]}"]`);
  await list.check(`#runs input[name=ids][value="${run.id}"]`);
  await api("POST", `/api/runs/${run.id}/stop`);
  await page.waitForSelector(`#figures tr[data-run-id="${run.id}"] [data-figure="status"]:text("stopped")`, { timeout: 120_000 });
  await list.waitForSelector(`#runs tr[data-run-id="${run.id}"] .status:text("stopped")`, { timeout: 60_000 });
  const ticked = await list.locator("#runs input[name=ids]:checked").evaluateAll((boxes) => boxes.map((box) => Number(box.value)));
  assert.deepEqual(ticked.sort((a, b) => a - b), [ids[0], run.id]);
  await list.context().close();
  await page.context().close();
});

test("the run page's chart: log when the losses span over 10x, readable without JavaScript", { timeout: 60_000 }, async () => {
  const id = ids[1];
  const metrics = await api("GET", `/api/runs/compare?ids=${ids[0]},${id}`);
  const losses = [...metrics.runs[1].train.map((p) => p.train_loss), ...metrics.runs[1].valid.map((p) => p.val_loss)];
  const automatic = Math.max(...losses) / Math.min(...losses) > 10 ? "log" : "linear";
  for (const javaScriptEnabled of [true, false]) {
    const page = await newPage(browser, { javaScriptEnabled });
    await page.goto(`${server.baseUrl}/runs/${id}`);
    assert.equal(await page.locator("#loss-chart").getAttribute("data-scale"), automatic);
    await page.goto(`${server.baseUrl}/runs/${id}?x=step&y=log`);
    const chart = page.locator("#loss-chart");
    assert.equal(await chart.getAttribute("data-scale"), "log");
    assert.match(await chart.locator(".x-label").textContent(), /log scale$/);
    // Plotted in log10: the polyline's y of the last validation point.
    const last = metrics.runs[1].valid.at(-1);
    const points = (await chart.locator('polyline[data-series="valid"]').getAttribute("points")).trim().split(/\s+/);
    assert.ok(Math.abs(Number(points.at(-1).split(",")[1]) - Math.log10(last.val_loss)) < 1e-9);
    for (const label of await chart.locator(".y-ticks .tick").allTextContents()) {
      assert.match(label, /^\d+(\.\d*[1-9])?$/, `tick ${label}`);
    }
    // Keyboard focus shows the point's step and value (CSS alone without JS).
    const marker = chart.locator('.point[data-series="valid"]').last();
    await marker.focus();
    assert.equal(await marker.locator(".tip").evaluate((tip) => getComputedStyle(tip).visibility), "visible");
    assert.equal(await marker.locator(".tip").textContent(), `validation loss · step 10 · ${last.val_loss.toFixed(3)}`);
    await screenshot(page, javaScriptEnabled ? "run-chart-log" : "run-chart-log-nojs");
    await page.context().close();
  }
});

test("a LAN viewer opens a shared comparison", { timeout: 60_000 }, async () => {
  await server.stop();
  server = await startIn(server.dataDir, ["--lan", "--host", "127.0.0.1"]);
  const page = await newPage(browser);
  const violations = [];
  page.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) violations.push(message.text());
  });
  const response = await page.goto(`${server.baseUrl}/runs/compare?ids=${ids.join(",")}`);
  assert.equal(response.status(), 200);
  assert.equal(await page.locator("#role").textContent(), "viewer");
  assert.equal(await page.locator("#loss-chart polyline").count(), 6);
  assert.equal(await page.locator("#config-diff tbody tr").count(), 2);
  const api = await fetch(`${server.baseUrl}/api/runs/compare?ids=${ids.join(",")}`);
  assert.equal(api.status, 200);
  assert.doesNotMatch(await api.text(), new RegExp(server.dataDir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
  assert.deepEqual(violations, []);
  await page.context().close();
});

// The System page and the thermal guard in a browser: the server reads a
// fixture tree (LORALAB_SYSTEM_ROOT) whose CPU sensor the test heats. The
// System page lists the sensor; a run's page draws the machine chart live,
// says "paused: CPU 97 °C" when the guard holds it (with and without
// JavaScript), and draws the pause once the run resumes.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fixture, jsonApi, launchBrowser, newPage, screenshot, startIn } from "./support.mjs";

let server;
let browser;
let api;
let root;

function write(relative, text) {
  const file = path.join(root, relative);
  mkdirSync(path.dirname(file), { recursive: true });
  // Renamed into place: the sampler never reads half a file.
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

const setCpuTemp = (celsius) => write("sys/class/hwmon/hwmon0/temp1_input", `${celsius * 1000}\n`);

before(async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), "loralab-e2e-system-"));
  execFileSync(fixture, [dataDir]);
  root = mkdtempSync(path.join(tmpdir(), "loralab-e2e-machine-"));
  write("sys/class/hwmon/hwmon0/name", "coretemp\n");
  write("sys/class/hwmon/hwmon0/temp1_label", "Package id 0\n");
  setCpuTemp(50);
  write("proc/meminfo", "MemTotal: 8000000 kB\nMemAvailable: 6000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n");
  server = await startIn(dataDir, [], { LORALAB_SYSTEM_ROOT: root });
  browser = await launchBrowser();
  api = jsonApi(server.baseUrl);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test("the System page shows the sensors found and the guard", async () => {
  const page = await newPage(browser);
  await page.goto(`${server.baseUrl}/system`);
  assert.equal(await page.locator("nav a[aria-current=page]").textContent(), "System");
  const sensors = await page.locator("#sensors").textContent();
  assert.match(sensors, /coretemp/);
  assert.match(sensors, /Package id 0/);
  assert.match(sensors, /50\.0 °C/);
  assert.match(await page.locator("#figures").textContent(), /Memory used\s*1\.9 GiB of 7\.6 GiB/);
  assert.match(await page.locator("#guard").textContent(), /Thermal guard on: pauses above 95 °C CPU/);
  assert.equal(await page.locator("#no-gpu").count(), 1);
  await screenshot(page, "system-page");
});

test("a run pauses when the sensor is hot, says so, and resumes when it cools", { timeout: 300_000 }, async () => {
  const run = await api("POST", "/api/runs", {
    name: "guarded",
    model: "tiny",
    dataset: "sample-ahoy",
    batch_size: 4,
    max_seq_length: 128,
    num_layers: -1,
    iters: 3000,
    steps_per_report: 10,
    steps_per_eval: 1000,
    save_every: 1000,
    val_batches: 1,
    lora_parameters: { rank: 4, scale: 10.0 },
  });
  const page = await newPage(browser);
  await page.goto(`${server.baseUrl}/runs/${run.id}`);
  // Live samples extend the machine chart's CPU temperature line.
  await page.waitForFunction(
    () => (document.querySelector('#system-chart polyline[data-series="cpu-temp"]')?.getAttribute("points") ?? "").includes(",50"),
    null,
    { timeout: 120_000 },
  );
  setCpuTemp(97);
  // The paused event reloads the page with the banner and Resume.
  await page.waitForSelector("#paused", { timeout: 60_000 });
  assert.match(await page.locator("#paused").textContent(), /^paused: CPU 97 °C for \d+ s at step \d+/);
  assert.equal(await page.locator("#resume").count(), 1);
  assert.equal(await page.locator("#run-status").textContent(), "running");
  assert.equal(await page.locator('[data-stat="phase"]').textContent(), "paused");
  await screenshot(page, "run-paused");

  const plain = await newPage(browser, { javaScriptEnabled: false });
  await plain.goto(`${server.baseUrl}/runs/${run.id}`);
  assert.match(await plain.locator("#paused").textContent(), /paused: CPU 97 °C/);

  setCpuTemp(80);
  // The resumed event reloads it again: no banner, the pause drawn and listed.
  await page.waitForFunction(() => !document.querySelector("#paused") && document.querySelector("#pauses"), null, {
    timeout: 60_000,
  });
  assert.equal(await page.locator('#system-chart polyline[data-series="pause"]').count(), 1);
  assert.match(await page.locator("#pauses").textContent(), /Paused at step \d+ \(CPU 97 °C\), for \d+ s/);
  await screenshot(page, "run-resumed");
  await api("POST", `/api/runs/${run.id}/stop`);
});

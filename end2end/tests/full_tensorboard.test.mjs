// A full fine-tune with TensorBoard logging started from the new-run form
// without JavaScript: the choices reach the run's config, the worker trains
// the top layers' own weights (their names in the adapter file), the run
// folder gets an event file, and the clone form comes back with both chosen
// and, submitted unchanged, gives the same config.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { jsonApi, launchBrowser, newPage, startTinyServer } from "./support.mjs";

let server;
let browser;
let api;

before(async () => {
  server = await startTinyServer("loralab-e2e-full-");
  browser = await launchBrowser();
  api = jsonApi(server.baseUrl);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function finished(id) {
  for (let i = 0; i < 600; i++) {
    const run = await api("GET", `/api/runs/${id}`);
    if (run.status === "done") return run;
    assert.notEqual(run.status, "failed", run.failure);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.fail(`run ${id} did not finish`);
}

/** The tensor names of a safetensors file (its JSON header). */
function tensorNames(file) {
  const bytes = readFileSync(file);
  const length = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + length).toString("utf8"));
  return Object.keys(header).filter((key) => key !== "__metadata__").sort();
}

test("a full fine-tune with TensorBoard from the form, and its clone", { timeout: 300_000 }, async () => {
  const page = await newPage(browser, { javaScriptEnabled: false });
  await page.goto(server.baseUrl + "/runs/new");
  await page.selectOption('select[name="form[model]"]', "tiny");
  await page.selectOption('select[name="form[fine_tune]"]', "full");
  await page.fill('input[name="form[iters]"]', "4");
  await page.fill('input[name="form[num_layers]"]', "1");
  await page.fill('input[name="form[max_seq_length]"]', "128");
  await page.check("#tensorboard");
  await Promise.all([page.waitForURL(/\/runs\/\d+$/), page.click("#start")]);
  const id = Number(page.url().match(/\/runs\/(\d+)$/)[1]);
  const run = await finished(id);
  assert.equal(run.config.fine_tune_type, "full");
  assert.equal(run.config.tensorboard, true);

  const folder = path.join(server.dataDir, "runs", String(id));
  const names = tensorNames(path.join(folder, "adapters.safetensors"));
  // The top block (of the tiny model's two): its matrices and norms, by mlx-lm's names.
  const trained = [
    "input_layernorm", "mlp.down_proj", "mlp.gate_proj", "mlp.up_proj", "post_attention_layernorm",
    "self_attn.k_proj", "self_attn.o_proj", "self_attn.q_proj", "self_attn.v_proj",
  ].map((key) => `model.layers.1.${key}.weight`);
  assert.deepEqual(names, trained);
  const events = readdirSync(path.join(folder, "tensorboard"));
  assert.equal(events.length, 1, events.join(", "));
  assert.match(events[0], /^events\.out\.tfevents\./);

  await page.goto(`${server.baseUrl}/runs/new?clone=${id}`);
  assert.equal(await page.locator('select[name="form[fine_tune]"]').inputValue(), "full");
  assert.equal(await page.isChecked("#tensorboard"), true);
  await Promise.all([page.waitForURL(/\/runs\/\d+$/), page.click("#start")]);
  const clone = Number(page.url().match(/\/runs\/(\d+)$/)[1]);
  assert.notEqual(clone, id);
  const copy = await finished(clone);
  assert.deepEqual(copy.config, run.config);
});

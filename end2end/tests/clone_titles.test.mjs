// Page titles, and clone as a faithful copy: a run made through the API with settings no
// preset has (report every step, 2 validation batches, scale 10, dropout,
// a seed), cloned on the new-run page and submitted unchanged, gets the
// original's config key for key, with JavaScript on and off.
import assert from "node:assert/strict";
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

// Exports in a real browser: the run page's export form (with and without
// JavaScript) starts an export, the export's page follows it to done and
// shows the command that uses it, the files and the download links; the
// Exports page lists it; a bad choice comes back to the run page as a
// message naming the field.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { jsonApi, launchBrowser, newPage, screenshot, startTinyServer, trainTiny } from "./support.mjs";

let server;
let browser;
let api;
let run;

before(async () => {
  server = await startTinyServer("loralab-e2e-exports-");
  api = jsonApi(server.baseUrl);
  browser = await launchBrowser();
  run = await trainTiny(api, { name: "exported", iters: 10, steps_per_eval: 5, save_every: 5, val_batches: 1 });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

for (const javaScriptEnabled of [true, false]) {
  test(`the run page's form exports a fused folder (JavaScript ${javaScriptEnabled ? "on" : "off"})`, async () => {
    const page = await newPage(browser, { javaScriptEnabled });
    await page.goto(`${server.baseUrl}/runs/${run}`);
    assert.equal(await page.locator("#exports-empty").count(), javaScriptEnabled ? 1 : 0);
    await page.selectOption("#export-format", "hf");
    await page.selectOption("#export-dtype", "f32");
    await page.selectOption("#export-step", "5");
    await Promise.all([page.waitForURL(/\/exports\/\d+$/), page.click("#export-start")]);
    // Live (SSE, then a reload) or by the page's own refresh.
    await page.waitForSelector("#export-status.done", { timeout: 60_000 });
    const usage = await page.locator("#export-usage").textContent();
    assert.match(usage, /AutoModelForCausalLM\.from_pretrained/);
    const files = await page.locator("#export-files li code").allTextContents();
    for (const name of ["config.json", "model.safetensors.index.json", "model-00001-of-00001.safetensors", "README.md"]) {
      assert.ok(files.includes(name), `${name} in ${files}`);
    }
    const id = Number(page.url().split("/").pop());
    const view = await api("GET", `/api/exports/${id}`);
    assert.equal(view.step, 5);
    assert.equal(view.dtype, "f32");
    const zip = await fetch(`${server.baseUrl}/api/exports/${id}/download?as=zip`);
    assert.equal(zip.headers.get("content-type"), "application/zip");
    assert.ok((await zip.arrayBuffer()).byteLength > view.size_bytes);
    if (javaScriptEnabled) await screenshot(page, "export-done");

    await page.goto(`${server.baseUrl}/exports`);
    assert.ok((await page.locator("#exports tbody tr").count()) >= 1);
    if (javaScriptEnabled) await screenshot(page, "exports");
    await page.goto(`${server.baseUrl}/runs/${run}`);
    assert.ok((await page.locator("#run-exports tbody tr").count()) >= 1);
    if (javaScriptEnabled) await screenshot(page, "run-exports");
  });
}

test("a bad export choice comes back to the run page naming the field", async () => {
  // The form offers only 4 and 8 bits: a hand-made post, as a browser sends it.
  const response = await fetch(`${server.baseUrl}/api/runs/${run}/exports`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", accept: "text/html" },
    body: "format=mlx&bits=3",
    redirect: "manual",
  });
  assert.equal(response.status, 303);
  const page = await newPage(browser, { javaScriptEnabled: false });
  await page.goto(`${server.baseUrl}${response.headers.get("location")}`);
  assert.match(await page.locator("#export-error").textContent(), /bits: bits must be 4 or 8/);
});

// Evaluations in a real browser: "Evaluate on test split" on a finished
// run (tiny model) shows the loss and perplexity on the run page, and the
// compare page computes each column's loss and perplexity on a chosen
// dataset split. Both are plain form posts, so they also work without
// JavaScript.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { jsonApi, launchBrowser, newPage, screenshot, startTinyServer, trainTiny } from "./support.mjs";

let server;
let browser;
let api;
let run;

before(async () => {
  server = await startTinyServer("loralab-e2e-evaluate-");
  api = jsonApi(server.baseUrl);
  browser = await launchBrowser();
  run = await trainTiny(api, {
    name: "evaluated",
    iters: 20,
    learning_rate: 3e-2,
    steps_per_eval: 10,
    save_every: 10,
    val_batches: 2,
  });
});

/** A comparison of 20 dataset prompts of up to 1024 tokens in two columns:
 * still generating when Stop is pressed. */
function startLongComparison() {
  return api("POST", "/api/compare", {
    model: "tiny",
    columns: ["base", `run:${run}`],
    dataset: "sample-ahoy",
    split: "valid",
    count: 20,
    settings: { max_tokens: 1024 },
  });
}

after(async () => {
  await browser?.close();
  await server?.stop();
});

test("Evaluate on test split shows the loss and perplexity on the run page", async () => {
  const page = await newPage(browser);
  await page.goto(`${server.baseUrl}/runs/${run}`);
  assert.equal(await page.locator("#evaluations-empty").count(), 1);
  await Promise.all([
    page.waitForURL(new RegExp(`/runs/${run}#evaluations$`), { timeout: 120_000 }),
    page.click("#evaluate-test"),
  ]);
  const row = page.locator("#evaluations-table tbody tr").first();
  assert.equal(await row.getAttribute("data-split"), "test");
  const loss = Number(await row.locator('[data-eval="loss"]').textContent());
  const perplexity = Number(await row.locator('[data-eval="perplexity"]').textContent());
  assert.ok(loss > 0 && Number.isFinite(loss), `loss ${loss}`);
  assert.ok(Math.abs(perplexity - Math.exp(loss)) < 0.01 * perplexity, `${perplexity} vs exp(${loss})`);
  assert.ok(Number(await row.locator('[data-eval="tokens"]').textContent()) > 0);
  const stored = await api("GET", `/api/runs/${run}/evaluations`);
  assert.equal(stored.length, 1);
  assert.equal(stored[0].loss.toFixed(4), loss.toFixed(4));
  await screenshot(page, "run-evaluations");
});

test("the compare page shows each column's loss on a chosen dataset", async () => {
  const comparison = await api("POST", "/api/compare", {
    model: "tiny",
    columns: ["base", `run:${run}`],
    prompt: "Hello",
    settings: { max_tokens: 8 },
  });
  const page = await newPage(browser);
  await page.goto(`${server.baseUrl}/compare/${comparison.id}`);
  await page.waitForSelector("#compare-status.done", { timeout: 60_000 });
  await page.selectOption("#evaluate-dataset", "sample-ahoy");
  await page.selectOption("#evaluate-split", "valid");
  await Promise.all([
    page.waitForURL(/\?dataset=sample-ahoy&split=valid#losses$/, { timeout: 120_000 }),
    page.click("#evaluate-columns"),
  ]);
  const losses = (await page.locator("[data-column-eval-loss]").allTextContents()).map(Number);
  const ppls = (await page.locator("[data-column-eval-ppl]").allTextContents()).map(Number);
  assert.equal(losses.length, 2);
  for (const [i, loss] of losses.entries()) {
    assert.ok(loss > 0 && Number.isFinite(loss), `column ${i}: ${loss}`);
    assert.ok(Math.abs(ppls[i] - Math.exp(loss)) < 0.01 * ppls[i], `column ${i}: ${ppls[i]}`);
  }
  // The adapter learned the dataset's style: lower loss than the base.
  assert.ok(losses[1] < losses[0], JSON.stringify(losses));
  await screenshot(page, "compare-losses");

  // Without JavaScript: the same form, the same numbers (stored, reused).
  const plain = await newPage(browser, { javaScriptEnabled: false });
  await plain.goto(`${server.baseUrl}/compare/${comparison.id}`);
  await plain.selectOption("#evaluate-dataset", "sample-ahoy");
  await plain.selectOption("#evaluate-split", "valid");
  await Promise.all([plain.waitForURL(/#losses$/, { timeout: 120_000 }), plain.click("#evaluate-columns")]);
  const again = (await plain.locator("[data-column-eval-loss]").allTextContents()).map(Number);
  assert.deepEqual(again, losses);
});

test("Stop ends a comparison mid-generation and keeps what was written", async () => {
  const comparison = await startLongComparison();
  const page = await newPage(browser);
  await page.goto(`${server.baseUrl}/compare/${comparison.id}`);
  // Some text has streamed in before the stop.
  await page.waitForFunction(() =>
    [...document.querySelectorAll(".output-text")].some((o) => o.textContent.length > 0),
  );
  await Promise.all([page.waitForURL(new RegExp(`/compare/${comparison.id}$`)), page.click("#compare-stop")]);
  // It says how it ended: cancelled, not done.
  await page.waitForSelector("#compare-status.cancelled");
  assert.equal(await page.locator("#compare-status").textContent(), "cancelled");
  assert.equal(await page.locator("#compare-stop").count(), 0);
  const statuses = await page.locator(".output .output-status").allTextContents();
  assert.equal(statuses.length, 40);
  assert.ok(statuses.includes("cancelled"), statuses.join(","));
  const stored = await api("GET", `/api/compare/${comparison.id}`);
  const outputs = stored.prompts.flatMap((p) => p.outputs);
  // The 40 outputs are decoded together (one batch): the stop cuts them
  // all between two tokens, each keeping what it had.
  const cut = outputs.filter((o) => o.status === "cancelled" && o.generated_tokens > 0);
  assert.ok(cut.length >= 1, JSON.stringify(outputs.map((o) => o.status)));
  for (const output of outputs) assert.ok(output.generated_tokens < 1024, JSON.stringify(output));
  await screenshot(page, "compare-stopped");
});

test("Stop on a chat keeps the reply so far, marked stopped", async () => {
  const page = await newPage(browser);
  await page.goto(server.baseUrl + "/chat");
  await page.selectOption("#chat-model", "tiny");
  await page.selectOption("#chat-adapter", "base");
  await page.click("#chat-start");
  await page.waitForURL(/\/chat\/\d+$/);
  assert.ok(await page.locator("#chat-stop").isHidden());
  // The tiny model writes a whole reply in a fraction of a second: keep
  // the worker busy with a long comparison, so the reply is still queued
  // or generating when Stop is pressed.
  const busy = await startLongComparison();
  await page.fill("#chat-input", "Tell me a long story");
  await page.click("#chat-send");
  await page.click("#chat-stop");
  await page.waitForSelector(".message.assistant.cancelled", { timeout: 60_000 });
  await page.waitForSelector("#chat-stop", { state: "hidden" });
  await api("POST", `/api/compare/${busy.id}/cancel`, {});
  const chatId = page.url().split("/").pop();
  const chat = await api("GET", `/api/chat/${chatId}`);
  assert.equal(chat.messages.length, 2);
  assert.equal(chat.messages[1].role, "assistant");
  assert.equal(chat.messages[1].cancelled, true);
  assert.equal(await page.locator(".message.assistant .content").textContent(), chat.messages[1].content);
  await page.reload();
  assert.equal(await page.locator(".message.assistant .stopped").count(), 1);
});

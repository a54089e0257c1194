// Compare adapters in a real browser: the base and two adapters trained
// here (tiny model) on a typed prompt and on 3 dataset prompts, a blind
// vote on every prompt, the no-JS form post, and a streamed chat reply.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { jsonApi, launchBrowser, newPage, screenshot, startTinyServer, trainTiny } from "./support.mjs";

let server;
let browser;
let api;
let runs = [];

/** An adapter trained here: a run of 30 steps at `learningRate`. */
async function trainAdapter(name, learningRate) {
  return trainTiny(api, {
    name,
    iters: 30,
    learning_rate: learningRate,
    steps_per_eval: 30,
    save_every: 30,
    val_batches: 1,
  });
}

before(async () => {
  server = await startTinyServer("loralab-e2e-compare-");
  api = jsonApi(server.baseUrl);
  browser = await launchBrowser();
  runs = [await trainAdapter("gentle", 1e-3), await trainAdapter("strong", 3e-2)];
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function fillColumns(page) {
  await page.selectOption("#compare-model", "tiny");
  await page.selectOption("#column-1", "base");
  await page.selectOption("#column-2", `run:${runs[0]}`);
  await page.selectOption("#column-3", `run:${runs[1]}`);
  await page.fill('input[name="form[max_tokens]"]', "12");
}

async function finishedOutputs(page) {
  await page.waitForSelector("#compare-status.done", { timeout: 60_000 });
  return page.locator(".output").evaluateAll((outputs) =>
    outputs.map((o) => ({ status: o.querySelector(".output-status").textContent, text: o.querySelector(".output-text").textContent })),
  );
}

test("base and two adapters on a typed prompt stream into three columns", async () => {
  const page = await newPage(browser);
  await page.goto(server.baseUrl + "/compare");
  await fillColumns(page);
  await page.fill("#compare-prompt", "Hello, who are you?");
  await page.click("#compare-start");
  await page.waitForURL(/\/compare\/\d+$/);
  const outputs = await finishedOutputs(page);
  assert.equal(outputs.length, 3);
  for (const output of outputs) assert.equal(output.status, "done");
  assert.ok(outputs.every((o) => o.text.length > 0), JSON.stringify(outputs));
  const headers = await page.locator("#columns tbody tr td:first-child").allTextContents();
  assert.deepEqual(headers, ["base (no adapter)", `gentle (run ${runs[0]})`, `strong (run ${runs[1]})`]);
  // The trained columns show their run's validation loss and perplexity.
  const valLoss = await page.locator("#columns tbody tr:nth-child(2) td:nth-child(2)").textContent();
  assert.match(valLoss, /^\d+\.\d{3}$/);
  await screenshot(page, "compare-typed");
});

test("3 dataset prompts with references, then a blind vote on each", async () => {
  const page = await newPage(browser);
  await page.goto(server.baseUrl + "/compare");
  await fillColumns(page);
  await page.check("#source-dataset");
  await page.selectOption("#compare-dataset", "sample-ahoy");
  await page.fill("#compare-count", "3");
  await page.click("#compare-start");
  await page.waitForURL(/\/compare\/\d+$/);
  const comparisonUrl = page.url();
  const outputs = await finishedOutputs(page);
  assert.equal(outputs.length, 9);
  assert.equal(await page.locator(".prompt .reference").count(), 3);
  assert.match(await page.locator(".prompt h3").first().textContent(), /valid\.jsonl:1/);
  await screenshot(page, "compare-dataset");

  await page.click("#vote-link");
  for (let prompt = 0; prompt < 3; prompt++) {
    await page.waitForURL(new RegExp(`/vote\\?prompt=${prompt}$`));
    const body = await page.locator("main").textContent();
    // Blind: no column names on the ballot.
    assert.ok(!body.includes("gentle") && !body.includes("base (no adapter)"), body);
    assert.equal(await page.locator("[data-vote]").count(), 3);
    await page.click('[data-vote="A"]');
  }
  await page.waitForURL(/\?voted=1$/);
  assert.equal(page.url().split("?")[0], comparisonUrl);
  assert.equal(await page.locator("#vote-count").textContent(), "3 blind votes");
  const wins = (await page.locator("[data-column-wins]").allTextContents()).map(Number);
  assert.equal(wins.reduce((a, b) => a + b, 0), 3);
  const rates = await page.locator("[data-column-win-rate]").allTextContents();
  for (const rate of rates) assert.match(rate, /^\d+%$/);
  await screenshot(page, "compare-votes");
});

test("without JavaScript the form post shows the finished outputs", async () => {
  const page = await newPage(browser, { javaScriptEnabled: false });
  await page.goto(server.baseUrl + "/compare");
  await fillColumns(page);
  await page.fill("#compare-prompt", "Say ahoy");
  await Promise.all([page.waitForURL(/\/compare\/\d+$/, { timeout: 60_000 }), page.click("#compare-start")]);
  assert.equal(await page.locator("#compare-status").textContent(), "done");
  const texts = await page.locator(".output .output-text").allTextContents();
  assert.equal(texts.length, 3);
  assert.ok(texts.every((t) => t.length > 0));
});

test("a chat with one adapter streams its reply and keeps the conversation", async () => {
  const page = await newPage(browser);
  await page.goto(server.baseUrl + "/chat");
  await page.selectOption("#chat-model", "tiny");
  await page.selectOption("#chat-adapter", `run:${runs[1]}`);
  await page.click("#chat-start");
  await page.waitForURL(/\/chat\/\d+$/);
  // Shift+Enter is a new line; Enter sends.
  await page.focus("#chat-input");
  await page.keyboard.type("Hi");
  await page.keyboard.press("Shift+Enter");
  await page.keyboard.type("there");
  assert.equal(await page.locator(".message").count(), 0);
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => {
    const reply = document.querySelector(".message.assistant");
    return reply && !reply.classList.contains("streaming") && reply.textContent.length > "assistant".length;
  });
  await page.reload();
  const roles = await page.locator(".message .role").allTextContents();
  assert.deepEqual(roles, ["user", "assistant"]);
  assert.equal(await page.locator(".message.user .content").textContent(), "Hi\nthere");
  // The chat page lists it to reopen.
  const chatId = page.url().split("/").pop();
  await page.goto(server.baseUrl + "/chat");
  const row = page.locator(`#earlier-chats tr[data-chat="${chatId}"]`);
  assert.match(await row.locator("a").textContent(), /^Hi\s*there$/);
  assert.equal(await row.locator("td.num").textContent(), "2");
  await Promise.all([page.waitForURL(new RegExp(`/chat/${chatId}$`)), row.locator("a").click()]);
  await screenshot(page, "chat");
});

for (const javaScriptEnabled of [true, false]) {
  test(`a chat's temperature and reply length are set at the start and changed later (JavaScript ${javaScriptEnabled ? "on" : "off"})`, async () => {
    const page = await newPage(browser, { javaScriptEnabled });
    await page.goto(server.baseUrl + "/chat");
    await page.selectOption("#chat-model", "tiny");
    await page.selectOption("#chat-adapter", "base");
    await page.fill("#chat-temperature", "0");
    await page.fill("#chat-max-tokens", "4");
    await Promise.all([page.waitForURL(/\/chat\/\d+$/), page.click("#chat-start")]);
    assert.match(await page.locator("#chat-summary").textContent(), /temperature 0 · up to 4 tokens/);
    const chatId = page.url().split("/").pop();
    let chat = await api("GET", `/api/chat/${chatId}`);
    assert.deepEqual([chat.temperature, chat.max_tokens], [0, 4]);

    // A value out of range is said by name and changes nothing.
    await page.click("#chat-settings summary");
    await page.fill("#chat-settings-form input[name='form[max_tokens]']", "5000");
    await Promise.all([page.waitForURL(/error=/), page.click("#chat-settings-save")]);
    assert.match(await page.locator(".error-box[role=alert]").first().textContent(), /max_tokens: must be between 1 and 1024/);
    chat = await api("GET", `/api/chat/${chatId}`);
    assert.equal(chat.max_tokens, 4);

    await page.goto(`${server.baseUrl}/chat/${chatId}`);
    await page.click("#chat-settings summary");
    await page.fill("#chat-settings-form input[name='form[max_tokens]']", "9");
    await page.fill("#chat-settings-form input[name='form[system]']", "Answer like a pirate.");
    await Promise.all([page.waitForURL(new RegExp(`/chat/${chatId}$`)), page.click("#chat-settings-save")]);
    assert.match(await page.locator("#chat-summary").textContent(), /temperature 0 · up to 9 tokens · system: Answer like a pirate\./);
    chat = await api("GET", `/api/chat/${chatId}`);
    assert.deepEqual([chat.temperature, chat.max_tokens, chat.system], [0, 9, "Answer like a pirate."]);
  });
}

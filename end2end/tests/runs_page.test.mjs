// The home page in a real browser, with and without JavaScript, light and dark.
import assert from "node:assert/strict";
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

test("the runs page renders with JavaScript", async () => {
  const page = await newPage(browser);
  const response = await page.goto(server.baseUrl + "/");
  assert.equal(response.status(), 200);
  assert.equal(await page.locator("h1").textContent(), "Runs");
  assert.match(await page.locator("#runs-empty").textContent(), /No runs yet/);
  assert.match(await page.locator("header .device").textContent(), /CPU/);
  // The stylesheet applied: the header is laid out as a flex row.
  const display = await page.locator("header.top").evaluate((el) => getComputedStyle(el).display);
  assert.equal(display, "flex");
  await screenshot(page, "runs-light");
});

test("the runs page renders without JavaScript and in dark mode", async () => {
  const page = await newPage(browser, { javaScriptEnabled: false, colorScheme: "dark" });
  await page.goto(server.baseUrl + "/");
  assert.equal(await page.locator("h1").textContent(), "Runs");
  const background = await page.locator("body").evaluate((el) => getComputedStyle(el).backgroundColor);
  assert.equal(background, "rgb(20, 22, 27)");
  await screenshot(page, "runs-dark-nojs");
});

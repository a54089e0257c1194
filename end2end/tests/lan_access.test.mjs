// --lan in a real browser: a viewer sees no actions and is refused, the
// owner link becomes an HttpOnly cookie and leaves the address bar, and no
// page trips the Content-Security-Policy.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { launchBrowser, newPage, screenshot, startServer } from "./support.mjs";

let server;
let browser;

before(async () => {
  server = await startServer(["--lan", "--host", "127.0.0.1"]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Collects CSP violations the page reports to its console. */
function watchViolations(page) {
  const violations = [];
  page.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) violations.push(message.text());
  });
  return violations;
}

const stopFromPage = (page) =>
  page.evaluate(async () => (await fetch("/api/runs/999/stop", { method: "POST" })).status);

test("a viewer watches without actions and is refused", async () => {
  const page = await newPage(browser);
  const violations = watchViolations(page);
  for (const where of ["/", "/runs/new", "/models", "/datasets", "/no/such/page"]) {
    await page.goto(server.baseUrl + where);
    assert.equal(await page.locator("#role").textContent(), "viewer", where);
  }
  await page.goto(server.baseUrl + "/");
  assert.equal(await page.locator('a[href="/runs/new"]').count(), 0);
  assert.equal(await stopFromPage(page), 403);
  assert.deepEqual(violations, []);
  await screenshot(page, "lan-viewer");
});

test("the owner link becomes a session cookie", async () => {
  const token = readFileSync(path.join(server.dataDir, "access", "owner.token"), "utf8").trim();
  const page = await newPage(browser);
  const violations = watchViolations(page);
  await page.goto(`${server.baseUrl}/auth?token=${token}`);
  assert.equal(page.url(), server.baseUrl + "/", "the token must leave the address bar");
  assert.equal(await page.locator("#role").textContent(), "owner");
  assert.equal(await page.locator('header a[href="/runs/new"]').count(), 1);
  const [cookie] = await page.context().cookies();
  assert.equal(cookie.name, "loralab_session");
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, "Strict");
  assert.equal(await page.evaluate(() => document.cookie), "", "scripts must not see the session");
  // A same-origin post carries Origin and passes; the run does not exist.
  assert.equal(await stopFromPage(page), 404);
  // So does a plain form post (no fetch), the way pages without JS post.
  const posted = page.waitForResponse((r) => r.url().endsWith("/fn/runs/stop"));
  await page.evaluate(() => {
    const form = document.createElement("form");
    form.method = "post";
    form.action = "/fn/runs/stop";
    const id = document.createElement("input");
    id.name = "id";
    id.value = "999";
    form.append(id);
    document.body.append(form);
    form.submit();
  });
  assert.notEqual((await posted).status(), 403);
  // It reached the server function, which sends its error back to the page.
  // In words, not base64.
  await page.waitForURL(/error=/);
  assert.equal(new URL(page.url()).searchParams.get("error"), "run 999 does not exist");
  await page.goto(server.baseUrl + "/runs/new");
  assert.equal(await page.locator("#new-run").count(), 1);
  assert.deepEqual(violations, []);
  await screenshot(page, "lan-owner");
});

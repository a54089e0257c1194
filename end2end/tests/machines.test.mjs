// The Machines page without JavaScript: register a machine set from an
// mlx.launch hostfile (a bad one is refused naming the host entry and its
// field), check it (a host named `localhost` is checked without ssh, as
// the launcher starts it; a host ssh cannot resolve fails with ssh's
// reason), see each host's result, and delete a set.
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { launchBrowser, newPage, screenshot, startIn } from "./support.mjs";

let server;
let browser;

before(async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), "loralab-e2e-machines-"));
  server = await startIn(dataDir);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function register(page, name, hostfile) {
  await page.goto(server.baseUrl + "/machines");
  await page.fill('#register-machine-set input[name="name"]', name);
  await page.fill('#register-machine-set textarea[name="hostfile"]', hostfile);
  await Promise.all([page.waitForNavigation(), page.click("#register")]);
}

test("machine sets are registered, checked and deleted without JavaScript", { timeout: 120_000 }, async () => {
  const page = await newPage(browser, { javaScriptEnabled: false });
  await register(page, "lab", '[{"ssh": "localhost", "ips": ["127.0.0.1"]}, {"ssh": "nosuchhost.invalid", "ips": ["10.0.0.9"]}');
  assert.match(await page.locator('[role="alert"]').textContent(), /^hostfile: not JSON: /);

  await register(page, "lab", '[{"ssh": "localhost", "ips": ["127.0.0.1"]}, {"ssh": "nosuchhost.invalid"}]');
  assert.match(page.url(), /\/machines#set-1$/);
  const set = page.locator("#set-1");
  assert.equal((await set.locator("[data-check-verdict]").textContent()).trim(), "not checked yet");

  await Promise.all([page.waitForNavigation(), page.click("#check-1")]);
  const here = set.locator('tr[data-host="localhost"]');
  assert.equal(await here.getAttribute("data-check"), "ok");
  assert.match(await here.locator('[data-figure="version"]').textContent(), /^loralab \d+\.\d+\.\d+$/);
  assert.match(await here.locator('[data-figure="free_memory"]').textContent(), /^[\d.]+ (MiB|GiB)$/);
  const far = set.locator('tr[data-host="nosuchhost.invalid"]');
  assert.equal(await far.getAttribute("data-check"), "failed");
  assert.match(await far.locator('[data-figure="check"]').textContent(), /^unreachable over ssh: .*nosuchhost\.invalid/);
  assert.match(await set.locator("[data-check-verdict]").textContent(), /^a host failed its check/);
  await screenshot(page, "machines-checked");

  await register(page, "spare", '[{"ssh": "localhost", "ips": ["127.0.0.1"]}]');
  assert.equal(await page.locator("[data-machine-set]").count(), 2);
  await Promise.all([page.waitForNavigation(), page.click("#delete-2")]);
  assert.equal(await page.locator("[data-machine-set]").count(), 1);
  assert.equal(await page.locator('[data-machine-set="lab"]').count(), 1);
});

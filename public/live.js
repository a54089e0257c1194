// Loralab's only script: progressive enhancement. Every page works without
// it; with it, runs update live from server-sent events.
"use strict";

// Times are rendered by the server in UTC; show them in the viewer's zone
// and locale, the exact time as a tooltip.
for (const element of document.querySelectorAll("time[datetime]")) {
  const when = new Date(element.getAttribute("datetime"));
  if (Number.isNaN(when.getTime())) continue;
  element.textContent = when.toLocaleString();
  element.title = element.getAttribute("datetime");
}

// Mirrors tick in app/src/chart.rs: "30", "5.5", "2.31".
const formatTick = (value) =>
  Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(2).replace(/\.?0+$/, "");

// Extends a chart drawn in data coordinates (see app/src/chart.rs): append
// the point to its polyline and widen the viewBox when it falls outside.
function addPoint(chart, seriesKey, x, y) {
  const line = chart.querySelector(`polyline[data-series="${seriesKey}"]`);
  if (!line || !Number.isFinite(x) || !Number.isFinite(y)) return;
  const existing = line.getAttribute("points").trim();
  line.setAttribute("points", existing ? `${existing} ${x},${y}` : `${x},${y}`);
  let xMax = Number(chart.dataset.xMax);
  let yMin = Number(chart.dataset.yMin);
  let yMax = Number(chart.dataset.yMax);
  if (x <= xMax && y >= yMin && y <= yMax) return;
  xMax = Math.max(xMax, x);
  const margin = Math.max((Math.max(yMax, y) - Math.min(yMin, y)) * 0.08, 1e-3);
  if (y < yMin) yMin = Math.max(y - margin, 0);
  if (y > yMax) yMax = y + margin;
  Object.assign(chart.dataset, { xMax, yMin, yMax });
  chart.querySelector("svg").setAttribute("viewBox", `0 ${-yMax} ${xMax} ${yMax - yMin}`);
  const ticks = { "y-max": yMax, "y-mid": (yMin + yMax) / 2, "y-min": yMin, "x-mid": xMax / 2, "x-max": xMax };
  for (const [key, value] of Object.entries(ticks)) {
    const tick = chart.querySelector(`[data-tick="${key}"]`);
    if (tick) tick.textContent = formatTick(value);
  }
}

// Mirrors format_duration in app/src/pages/mod.rs.
function formatDuration(totalSeconds) {
  const seconds = Math.max(0, Math.round(totalSeconds));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

function setStat(key, text) {
  const element = document.querySelector(`[data-stat="${key}"]`);
  if (element) element.textContent = text;
}

// Python's `{:.3e}` (mlx-lm's learning rate): a two-digit exponent.
const pythonExp = (value) =>
  value.toExponential(3).replace(/e([+-])(\d)$/, "e$10$2");

// Mirrors report_line in server/src/train_cli.rs: the log reads as the
// worker wrote it, live as after a reload.
function logLine(kind, event) {
  switch (kind) {
    case "started": {
      const percent = (100 * event.trainable_parameters) / Math.max(event.total_parameters, 1);
      const millions = (count) => (count / 1e6).toFixed(3);
      let line = `Trainable parameters: ${percent.toFixed(3)}% (${millions(event.trainable_parameters)}M/${millions(event.total_parameters)}M)`;
      if (event.start_step > 0) line += `\nResuming after iter ${event.start_step}`;
      return line;
    }
    case "report":
      return `Iter ${event.step}: Train loss ${event.train_loss.toFixed(3)}, Learning Rate ${pythonExp(event.learning_rate)}, It/sec ${event.it_per_sec.toFixed(3)}, Tokens/sec ${event.tokens_per_sec.toFixed(3)}, Trained Tokens ${event.trained_tokens}, Peak mem ${event.peak_memory_gb.toFixed(3)} GB`;
    case "eval":
      return `Iter ${event.step}: Val loss ${event.val_loss.toFixed(3)}, Val took ${event.val_time_sec.toFixed(3)}s`;
    case "checkpoint": {
      const latest = event.path.includes("/") ? event.path.replace(/[^/]*$/, "adapters.safetensors") : null;
      return latest
        ? `Iter ${event.step}: Saved adapter weights to ${latest} and ${event.path}.`
        : `Iter ${event.step}: Saved adapter weights to ${event.path}.`;
    }
    case "checkpoint_removed":
      return `Iter ${event.step}: Removed ${event.path} (keep_checkpoints).`;
    case "log":
      return event.message;
    default:
      return null;
  }
}

const LOG_LINES = 50;

function appendLog(text) {
  const log = document.getElementById("log");
  if (!log || !text) return;
  const lines = log.textContent ? log.textContent.split("\n") : [];
  lines.push(...text.split("\n"));
  // Stays scrolled to its newest line (CSS anchors .tail at the bottom).
  log.textContent = lines.slice(-LOG_LINES).join("\n");
}

// The checkpoints table as the server renders it: a row per checkpoint,
// its validation loss when an evaluation ran at its step, and the best
// (lowest loss, earliest on a tie) marked.
function addCheckpoint(table, runId, step) {
  const body = table.tBodies[0];
  if (body.querySelector(`tr[data-step="${step}"]`)) return;
  const row = body.insertRow();
  row.dataset.step = step;
  row.innerHTML = `<td class="num">${step}</td><td class="num">–</td><td></td>` +
    `<td><a href="/api/runs/${runId}/adapter.zip?step=${step}" download>zip</a></td>`;
  const actions = document.querySelector(".toolbar .actions");
  if (actions && !document.getElementById("download")) {
    const link = document.createElement("a");
    Object.assign(link, { className: "button", id: "download", href: `/api/runs/${runId}/adapter.zip`, textContent: "Download adapter" });
    link.setAttribute("download", "");
    actions.append(link);
  }
}

function markCheckpoints(table, lossAt) {
  let best = null;
  for (const row of table.tBodies[0].rows) {
    const loss = lossAt.get(Number(row.dataset.step));
    if (loss !== undefined) {
      row.cells[1].textContent = loss.toFixed(3);
      if (best === null || loss < best.loss) best = { row, loss };
    }
  }
  for (const row of table.tBodies[0].rows) {
    const isBest = row === best?.row;
    row.classList.toggle("best", isBest);
    row.cells[2].innerHTML = isBest ? '<span class="status done">best</span>' : "";
  }
}

// The run page: loss points, figures and status as they happen. The server
// names each SSE event after the worker event ("report", "eval", ...).
const runStream = document.querySelector("[data-live-run]");
if (runStream) {
  const chart = document.getElementById("loss-chart");
  const checkpoints = document.getElementById("checkpoints");
  const runId = runStream.dataset.runId;
  const source = new EventSource(runStream.dataset.liveRun);
  let total = Number(runStream.dataset.totalSteps) || null;
  let best = Infinity;
  // Validation losses by step, for the checkpoints saved at those steps.
  const lossAt = new Map(
    [...checkpoints.tBodies[0].rows]
      .filter((row) => row.dataset.valLoss)
      .map((row) => [Number(row.dataset.step), Number(row.dataset.valLoss)]),
  );
  // The chart's x may count steps, trained tokens or epochs; evaluations
  // carry only a step, placed at the latest report's rate.
  const axis = chart.dataset.xAxis ?? "step";
  const xOfReport = (event) =>
    axis === "tokens" ? event.trained_tokens : axis === "epoch" ? event.epoch : event.step;
  let rate = 1;
  const on = (kind, handle) =>
    source.addEventListener(kind, (message) => {
      const event = JSON.parse(message.data);
      handle(event);
      appendLog(logLine(kind, event));
    });
  on("started", (event) => {
    total = event.total_steps;
    setStat("step", `${event.start_step}/${total}`);
    setStat("phase", event.start_step === 0 ? "first validation" : "training");
  });
  on("log", () => {});
  on("report", (event) => {
    const x = xOfReport(event);
    if (event.step > 0) rate = x / event.step;
    addPoint(chart, "train", x, event.train_loss);
    setStat("step", `${event.step}/${total ?? chart.dataset.xMax}`);
    setStat("train_loss", event.train_loss.toFixed(3));
    setStat("tokens_per_sec", event.tokens_per_sec.toFixed(0));
    setStat("learning_rate", event.learning_rate.toExponential(2));
    setStat("peak_memory_gb", `${event.peak_memory_gb.toFixed(2)} GB`);
    setStat("phase", "training");
    if (total && event.it_per_sec > 0) setStat("eta", formatDuration((total - event.step) / event.it_per_sec));
  });
  on("checkpoint", (event) => {
    // The first checkpoint makes forms possible (export): the server renders them.
    if (document.querySelector("[data-reload-on-checkpoint]")) {
      source.close();
      window.location.reload();
      return;
    }
    addCheckpoint(checkpoints, runId, event.step);
    markCheckpoints(checkpoints, lossAt);
  });
  // keep_checkpoints deleted it: the table lists what is on disk.
  on("checkpoint_removed", (event) => {
    checkpoints.tBodies[0].querySelector(`tr[data-step="${event.step}"]`)?.remove();
    markCheckpoints(checkpoints, lossAt);
  });
  on("eval", (event) => {
    addPoint(chart, "valid", axis === "step" ? event.step : event.step * rate, event.val_loss);
    best = Math.min(best, event.val_loss);
    setStat("best_val_loss", best.toFixed(3));
    lossAt.set(event.step, event.val_loss);
    if (event.step === 0) setStat("phase", "training");
    markCheckpoints(checkpoints, lossAt);
  });
  // The machine's samples: the second chart. Mirrors SYSTEM_SERIES in
  // app/src/pages/system.rs (every line in % or °C on one axis).
  const systemChart = document.getElementById("system-chart");
  const hottest = (values) => {
    const known = values.filter(Number.isFinite);
    return known.length ? Math.max(...known) : undefined;
  };
  const systemPoints = (s) => {
    const gpus = s.gpus ?? [];
    return {
      "cpu-temp": s.cpu_temp_c,
      "gpu-temp": hottest(gpus.map((g) => g.temp_c)),
      "cpu-util": s.cpu_util_percent,
      "gpu-util": hottest(gpus.map((g) => g.util_percent)),
      "gpu-power": hottest(gpus.map((g) => (g.power_limit_w > 0 ? (g.power_w * 100) / g.power_limit_w : undefined))),
      memory: s.memory_total_bytes > 0 ? (s.memory_used_bytes * 100) / s.memory_total_bytes : undefined,
    };
  };
  source.addEventListener("system", (message) => {
    if (!systemChart) return;
    const sample = JSON.parse(message.data);
    const x = axis === "step" ? sample.step : sample.step * rate;
    for (const [key, value] of Object.entries(systemPoints(sample))) addPoint(systemChart, key, x, value);
  });
  // The stream starts after the events this page was rendered with, so a
  // final state here is new: it brings new actions and checkpoints; a
  // guard's pause or resume brings the banner and the resume button.
  for (const kind of ["stopped", "done", "failed", "paused", "resumed"]) {
    on(kind, () => {
      source.close();
      window.location.reload();
    });
  }
}

// The runs list: progress in place; reload when a run changes status.
const runsTable = document.querySelector("[data-live-runs]");
if (runsTable) {
  const source = new EventSource(runsTable.dataset.liveRuns);
  source.addEventListener("run", (message) => {
    const change = JSON.parse(message.data);
    const row = runsTable.querySelector(`tr[data-run-id="${change.id}"]`);
    const status = row?.querySelector(".status");
    if (!row || status?.textContent !== change.status) {
      source.close();
      window.location.reload();
      return;
    }
    const bar = row.querySelector(".progress > span");
    if (bar && change.total_steps) bar.style.width = `${(100 * change.step) / change.total_steps}%`;
    const steps = row.querySelector(".progress + .muted");
    if (steps) steps.textContent = `${change.step}/${change.total_steps}`;
    // Speed from the server's latest report, else from the steps seen here.
    const now = performance.now();
    const seen = (row.seen ??= { step: change.step, at: now });
    const measured = change.step > seen.step ? (change.step - seen.step) / ((now - seen.at) / 1000) : 0;
    const speed = Number(row.dataset.itPerSec) || measured;
    const eta = row.querySelector("[data-eta]");
    if (eta && speed > 0) eta.textContent = formatDuration((change.total_steps - change.step) / speed);
  });
}

// The new-run form: a field left empty takes the preset's value, which its
// placeholder shows; follow the preset choice.
const presetChoice = document.getElementById("preset");
if (presetChoice) {
  presetChoice.addEventListener("change", () => {
    const values = JSON.parse(presetChoice.selectedOptions[0]?.dataset.values ?? "{}");
    for (const field of document.querySelectorAll("[data-preset-field]")) {
      field.placeholder = values[field.dataset.presetField] ?? "";
    }
  });
}

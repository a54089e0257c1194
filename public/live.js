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

// ---- Charts (mirrors app/src/chart.rs) ----
// The SVG is in plot units (y or log10 y); ticks, grid lines and point
// markers are HTML in percent of the plot. Adding a point appends to its
// polyline, adds its marker and, when it falls outside, recomputes the
// bounds from every marker as the server does.

const plotY = (scale, y) =>
  !Number.isFinite(y) || (scale === "log" && y <= 0) ? null : scale === "log" ? Math.log10(y) : y;

function niceStep(span, count) {
  const raw = Math.max(span / count, Number.MIN_VALUE);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  return ([1, 2, 5, 10].find((factor) => factor * magnitude >= raw) ?? 10) * magnitude;
}

function linearTicks(low, high) {
  const step = niceStep(high - low, 5);
  const ticks = [];
  for (let i = Math.ceil(low / step - 1e-9); i <= Math.floor(high / step + 1e-9); i++) ticks.push([i * step, step]);
  return ticks;
}

function chartTicks(low, high, scale) {
  if (scale !== "log") return linearTicks(low, high);
  const [lowValue, highValue] = [10 ** low, 10 ** high];
  const inside = ([value]) => value >= lowValue * (1 - 1e-9) && value <= highValue * (1 + 1e-9);
  const decades = [];
  for (let d = Math.floor(low); d <= Math.ceil(high); d++) decades.push(d);
  const powers = decades.map((d) => [10 ** d, 10 ** d]).filter(inside);
  if (powers.length >= 3) return powers;
  const multiples = decades.flatMap((d) => [1, 2, 5].map((m) => [m * 10 ** d, 10 ** d])).filter(inside);
  if (multiples.length >= 3) return multiples;
  return linearTicks(lowValue, highValue);
}

// "30", "1500", "2", "2.5", "0.02": the tick step's precision, no trailing zeros.
function formatTick(value, step) {
  const decimals = Math.min(Math.max(-Math.floor(Math.log10(step)), 0), 8);
  const fixed = value.toFixed(decimals);
  const text = fixed.includes(".") ? fixed.replace(/\.?0+$/, "") : fixed;
  return text === "-0" ? "0" : text;
}

function describeX(axis, x) {
  switch (axis) {
    case "tokens": return `${x.toFixed(0)} tokens`;
    case "epoch": return `epoch ${x.toFixed(2)}`;
    case "time": return formatDuration(x);
    default: return null;
  }
}

function pointText(label, step, x, axis, y) {
  const described = describeX(axis, x);
  return described === null
    ? `${label} · step ${step} · ${y.toFixed(3)}`
    : `${label} · step ${step} · ${described} · ${y.toFixed(3)}`;
}

const tipSide = (left) => (left < 25 ? "start" : left > 75 ? "end" : "middle");

function chartBounds(chart) {
  const scale = chart.dataset.scale;
  let [yMin, yMax, xMax] = [Infinity, -Infinity, Number(chart.dataset.xExtent) || 0];
  for (const marker of chart.querySelectorAll(".point")) {
    const y = plotY(scale, Number(marker.dataset.y));
    if (y === null) continue;
    yMin = Math.min(yMin, y);
    yMax = Math.max(yMax, y);
    xMax = Math.max(xMax, Number(marker.dataset.x));
  }
  if (!Number.isFinite(yMin)) [yMin, yMax] = [0, 1];
  const margin = Math.max((yMax - yMin) * 0.08, scale === "log" ? 0.02 : 1e-3);
  return {
    xMax: Math.max(xMax, 1),
    yMin: scale === "log" ? yMin - margin : Math.max(yMin - margin, 0),
    yMax: yMax + margin,
  };
}

function placeMarker(chart, marker) {
  const { xMax, yMin, yMax } = chart.dataset;
  const y = plotY(chart.dataset.scale, Number(marker.dataset.y));
  const left = (100 * Number(marker.dataset.x)) / Number(xMax);
  const top = (100 * (Number(yMax) - y)) / (Number(yMax) - Number(yMin));
  marker.style.left = `${left.toFixed(3)}%`;
  marker.style.top = `${top.toFixed(3)}%`;
  marker.dataset.side = tipSide(left);
}

function tickElement(style, text) {
  const tick = document.createElement("span");
  tick.className = "tick";
  tick.setAttribute("style", style);
  const label = document.createElement("span");
  label.textContent = text;
  tick.append(label);
  return tick;
}

// The new bounds: viewBox, ticks and every marker's place.
function redrawChart(chart, bounds) {
  Object.assign(chart.dataset, bounds);
  const { xMax, yMin, yMax } = bounds;
  chart.querySelector("svg").setAttribute("viewBox", `0 ${-yMax} ${xMax} ${yMax - yMin}`);
  const scale = chart.dataset.scale;
  chart.querySelector(".y-ticks").replaceChildren(
    ...chartTicks(yMin, yMax, scale).map(([value, step]) => {
      const top = (100 * (yMax - plotY(scale, value))) / (yMax - yMin);
      return tickElement(`top:${top.toFixed(3)}%`, formatTick(value, step));
    }),
  );
  chart.querySelector(".x-ticks").replaceChildren(
    ...linearTicks(0, xMax).map(([value, step]) =>
      tickElement(`left:${((100 * value) / xMax).toFixed(3)}%`, formatTick(value, step))),
  );
  for (const marker of chart.querySelectorAll(".point")) placeMarker(chart, marker);
}

function addPoint(chart, seriesKey, step, x, y) {
  const line = chart.querySelector(`polyline[data-series="${seriesKey}"]`);
  const plotted = plotY(chart.dataset.scale, y);
  if (!line || !Number.isFinite(x) || plotted === null) return;
  const existing = line.getAttribute("points").trim();
  line.setAttribute("points", existing ? `${existing} ${x},${plotted}` : `${x},${plotted}`);
  const text = pointText(line.dataset.label, step, x, chart.dataset.xAxis, y);
  const marker = document.createElement("span");
  marker.className = line.getAttribute("class").replace(/^line\b/, "point");
  Object.assign(marker.dataset, { series: seriesKey, step, x, y });
  marker.setAttribute("role", "img");
  marker.setAttribute("aria-label", text);
  marker.tabIndex = chart.querySelector(".point") ? -1 : 0;
  const tip = document.createElement("span");
  tip.className = "tip";
  tip.setAttribute("aria-hidden", "true");
  tip.textContent = text;
  marker.append(tip);
  chart.querySelector(".points").append(marker);
  const bounds = chartBounds(chart);
  const { xMax, yMin, yMax } = chart.dataset;
  if (bounds.xMax !== Number(xMax) || bounds.yMin !== Number(yMin) || bounds.yMax !== Number(yMax)) {
    redrawChart(chart, bounds);
  } else {
    placeMarker(chart, marker);
  }
}

// Hover anywhere on the plot shows the nearest point; the chart is one
// tab stop, arrow keys move along a series (left/right) and between
// series (up/down), Home/End to its ends.
function enhanceChart(chart) {
  const plot = chart.querySelector(".plot");
  const markers = () => [...chart.querySelectorAll(".point")];
  const all = markers();
  all.forEach((marker, i) => (marker.tabIndex = i === all.length - 1 ? 0 : -1));
  let active = null;
  const activate = (marker) => {
    if (active === marker) return;
    active?.classList.remove("active");
    active = marker;
    marker?.classList.add("active");
  };
  plot.addEventListener("mousemove", (event) => {
    const rect = plot.getBoundingClientRect();
    let nearest = null;
    let distance = Infinity;
    for (const marker of markers()) {
      const dx = event.clientX - rect.left - (parseFloat(marker.style.left) / 100) * rect.width;
      const dy = event.clientY - rect.top - (parseFloat(marker.style.top) / 100) * rect.height;
      const d = dx * dx + dy * dy;
      if (d < distance) [nearest, distance] = [marker, d];
    }
    activate(nearest);
  });
  plot.addEventListener("mouseleave", () => activate(null));
  plot.addEventListener("keydown", (event) => {
    const marker = event.target.closest?.(".point");
    if (!marker) return;
    const series = [...new Set(markers().map((m) => m.dataset.series))];
    const inSeries = (key) => markers().filter((m) => m.dataset.series === key);
    const own = inSeries(marker.dataset.series);
    const index = own.indexOf(marker);
    let next = null;
    if (event.key === "ArrowRight") next = own[index + 1];
    else if (event.key === "ArrowLeft") next = own[index - 1];
    else if (event.key === "Home") next = own[0];
    else if (event.key === "End") next = own.at(-1);
    else if (event.key === "ArrowUp" || event.key === "ArrowDown") {
      const at = series.indexOf(marker.dataset.series) + (event.key === "ArrowDown" ? 1 : -1);
      const other = inSeries(series[(at + series.length) % series.length]);
      const x = Number(marker.dataset.x);
      next = other.reduce((best, m) =>
        !best || Math.abs(Number(m.dataset.x) - x) < Math.abs(Number(best.dataset.x) - x) ? m : best, null);
    } else return;
    event.preventDefault();
    if (!next || next === marker) return;
    marker.tabIndex = -1;
    next.tabIndex = 0;
    next.focus();
  });
}

for (const chart of document.querySelectorAll("figure.chart")) enhanceChart(chart);

// Feeds one run's events into a chart: series `${prefix}train` and
// `${prefix}valid`. Evaluations carry only a step: on the tokens and epoch
// axes they sit at the latest report's rate; on the time axis every point
// sits at the run's clock (`clock` seconds when the page was rendered).
function runFeeder(chart, prefix, clock) {
  const axis = chart.dataset.xAxis ?? "step";
  const loaded = performance.now();
  const now = () => clock + (performance.now() - loaded) / 1000;
  let rate = 1;
  return {
    report(event) {
      const x = axis === "tokens" ? event.trained_tokens : axis === "epoch" ? event.epoch
        : axis === "time" ? now() : event.step;
      if (event.step > 0) rate = x / event.step;
      addPoint(chart, `${prefix}train`, event.step, x, event.train_loss);
    },
    eval(event) {
      const x = axis === "step" ? event.step : axis === "time" ? now() : event.step * rate;
      addPoint(chart, `${prefix}valid`, event.step, x, event.val_loss);
    },
  };
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
    case "ranks":
      return `Iter ${event.step}: ` + event.ranks
        .map((r) => `rank ${r.rank} ${r.tokens_per_sec.toFixed(3)} tokens/sec, peak mem ${r.peak_memory_gb.toFixed(3)} GB`)
        .join("; ");
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
  // The latest report's tokens/s (all ranks), for the ranks' scaling.
  let globalRate = null;
  // Validation losses by step, for the checkpoints saved at those steps.
  const lossAt = new Map(
    [...checkpoints.tBodies[0].rows]
      .filter((row) => row.dataset.valLoss)
      .map((row) => [Number(row.dataset.step), Number(row.dataset.valLoss)]),
  );
  const feed = runFeeder(chart, "", Number(runStream.dataset.clock) || 0);
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
    feed.report(event);
    setStat("step", `${event.step}/${total ?? chart.dataset.xMax}`);
    setStat("train_loss", event.train_loss.toFixed(3));
    setStat("tokens_per_sec", event.tokens_per_sec.toFixed(0));
    globalRate = event.tokens_per_sec;
    setStat("learning_rate", event.learning_rate.toExponential(2));
    setStat("peak_memory_gb", `${event.peak_memory_gb.toFixed(2)} GB`);
    setStat("phase", "training");
    if (total && event.it_per_sec > 0) setStat("eta", formatDuration((total - event.step) / event.it_per_sec));
  });
  // Each rank's figures follow its report; the panel as the server renders it.
  on("ranks", (event) => {
    for (const figures of event.ranks) {
      const row = document.querySelector(`#ranks tr[data-rank="${figures.rank}"]`);
      if (!row) continue;
      row.querySelector('[data-figure="tokens_per_sec"]').textContent = figures.tokens_per_sec.toFixed(0);
      row.querySelector('[data-figure="peak_memory_gb"]').textContent = `${figures.peak_memory_gb.toFixed(2)} GB`;
    }
    const one = event.ranks.reduce((sum, r) => sum + r.tokens_per_sec, 0) / Math.max(event.ranks.length, 1);
    if (globalRate !== null && one > 0) {
      setStat("scaling", `${(globalRate / one).toFixed(2)}x one rank's tokens/s (${globalRate.toFixed(0)} against ${one.toFixed(0)}; ${event.ranks.length} ranks)`);
    }
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
    feed.eval(event);
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
  // The runs ticked for comparison survive the reload.
  const ticksKey = "loralab-compare-ticks";
  for (const id of JSON.parse(sessionStorage.getItem(ticksKey) ?? "[]")) {
    const box = runsTable.querySelector(`input[name=ids][value="${id}"]`);
    if (box) box.checked = true;
  }
  sessionStorage.removeItem(ticksKey);
  const source = new EventSource(runsTable.dataset.liveRuns);
  const reload = () => {
    source.close();
    const ticked = [...runsTable.querySelectorAll("input[name=ids]:checked")].map((box) => box.value);
    sessionStorage.setItem(ticksKey, JSON.stringify(ticked));
    window.location.reload();
  };
  // The stream fell behind and lost updates, perhaps a status change.
  source.addEventListener("resync", reload);
  // A run that changed status after the server rendered this page but
  // before the stream began is in no update: compare once it is open
  // (and again after a reconnect).
  source.addEventListener("open", async () => {
    const response = await fetch("/api/runs");
    if (!response.ok) return;
    for (const run of await response.json()) {
      const status = runsTable.querySelector(`tr[data-run-id="${run.id}"] .status`);
      if (status && status.textContent !== (run.paused ? "paused" : run.status)) {
        reload();
        return;
      }
    }
  });
  source.addEventListener("run", (message) => {
    const change = JSON.parse(message.data);
    const row = runsTable.querySelector(`tr[data-run-id="${change.id}"]`);
    const status = row?.querySelector(".status");
    if (!row || status?.textContent !== change.status) {
      reload();
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

// Runs side by side: every run still training streams into its curves,
// its validation figures follow; a run that ends reloads the page (its
// final figures are the server's).
const comparedRuns = document.querySelector("[data-live-compare]");
if (comparedRuns) {
  const chart = document.getElementById("loss-chart");
  for (const row of document.querySelectorAll("#figures tr[data-live-events]")) {
    const source = new EventSource(row.dataset.liveEvents);
    const feed = runFeeder(chart, row.dataset.seriesPrefix, Number(row.dataset.clock) || 0);
    const figure = (key) => row.querySelector(`[data-figure="${key}"]`);
    const bestCell = figure("best_val_loss");
    let best = Number.parseFloat(bestCell.textContent);
    source.addEventListener("report", (message) => feed.report(JSON.parse(message.data)));
    source.addEventListener("eval", (message) => {
      const event = JSON.parse(message.data);
      feed.eval(event);
      best = Number.isNaN(best) ? event.val_loss : Math.min(best, event.val_loss);
      bestCell.textContent = best.toFixed(3);
      figure("last_val_loss").textContent = event.val_loss.toFixed(3);
    });
    for (const kind of ["stopped", "done", "failed"]) {
      source.addEventListener(kind, () => {
        source.close();
        window.location.reload();
      });
    }
  }
}

// The runs list's compare form: the short, shareable `?ids=1,2,3`, oldest
// first as the page shows them (the form alone sends `?ids=3&ids=2&ids=1`,
// which the page reads as well).
const runsCompareForm = document.getElementById("compare-runs-form");
if (runsCompareForm) {
  runsCompareForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const ids = [...runsCompareForm.querySelectorAll("input[name=ids]:checked")].map((box) => Number(box.value))
      .sort((a, b) => a - b);
    window.location.assign(`${runsCompareForm.getAttribute("action")}?ids=${ids.join(",")}`);
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

// Live progress of running exports (the Exports page, a run's exports and
// an export's own page). Without it those pages refresh themselves while an
// export runs (a <noscript> refresh); with it, each running export follows
// its SSE stream and the page reloads once the export ends, so its files,
// command and download links show.
"use strict";

// The same figures as the server's `format_bytes`.
const exportBytes = (bytes) => {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
};

// The same text as the server's `progress_text` while running.
const exportProgressText = (view) =>
  view.status === "queued"
    ? "waiting for memory"
    : `${view.tensors_done} of ${view.tensors_total} tensors, ` +
      `${exportBytes(view.bytes_done)} of ${exportBytes(view.bytes_total)}`;

for (const box of document.querySelectorAll("[data-export-events]")) {
  const source = new EventSource(box.dataset.exportEvents);
  const scope = box.closest("main") || document;
  const render = (view) => {
    const progress = box.querySelector(".export-progress") || scope.querySelector("#export-progress");
    if (progress) progress.textContent = exportProgressText(view);
    const bar = scope.querySelector(".progress > span");
    if (bar && view.bytes_total > 0 && !box.matches("tr")) {
      bar.style.width = `${((100 * view.bytes_done) / view.bytes_total).toFixed(1)}%`;
    }
    const status = box.querySelector(".status");
    if (status) {
      status.textContent = view.status;
      status.className = `status ${view.status}`;
    }
  };
  source.addEventListener("progress", (event) => render(JSON.parse(event.data)));
  const finish = (event) => {
    source.close();
    render(JSON.parse(event.data));
    setTimeout(() => window.location.reload(), 300);
  };
  for (const kind of ["done", "failed", "cancelled"]) source.addEventListener(kind, finish);
}

// Live progress of the models page's pulls from the Hugging Face Hub.
// Without it the page reloads itself while a pull runs (a <noscript>
// refresh); with it, each running pull follows its SSE stream, and the page
// reloads once the pull ends, so the new model shows in the table.
"use strict";

// The same figures as the server's `format_bytes`.
const formatBytes = (bytes) => {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
};

const bytesText = (pull) => {
  let text = `${formatBytes(pull.done_bytes)} of ${formatBytes(pull.total_bytes)}`;
  if (pull.status === "done" && pull.from_cache) text += ", all from the cache";
  else if (pull.bytes_per_sec > 0) text += `, ${formatBytes(Math.floor(pull.bytes_per_sec))}/s`;
  return text;
};

const progressOf = (pull) => {
  if (pull.total_bytes === 0) return pull.status === "done" ? 1 : 0;
  return Math.min(1, Math.max(0, pull.done_bytes / pull.total_bytes));
};

const render = (box, pull) => {
  const bar = box.querySelector(".progress > span");
  if (bar) bar.style.width = `${(progressOf(pull) * 100).toFixed(1)}%`;
  const bytes = box.querySelector(".pull-bytes");
  if (bytes) bytes.textContent = bytesText(pull);
  const status = box.querySelector(".status");
  if (status) {
    status.textContent = pull.status;
    status.className = `status ${pull.status}`;
  }
  const list = box.querySelector(".pull-files");
  if (!list) return;
  for (const file of pull.files) {
    let item = [...list.children].find((li) => li.dataset.file === file.name);
    if (!item) {
      item = document.createElement("li");
      item.dataset.file = file.name;
      const name = document.createElement("code");
      name.textContent = file.name;
      const state = document.createElement("span");
      state.className = "muted file-bytes";
      item.append(name, " ", state);
      list.append(item);
    }
    const state = item.querySelector(".file-bytes");
    if (state) {
      state.textContent = file.cached
        ? `${formatBytes(file.size)}, in the cache`
        : `${formatBytes(Math.min(file.done, file.size))} of ${formatBytes(file.size)}`;
    }
  }
};

for (const box of document.querySelectorAll("[data-pull-events]")) {
  const source = new EventSource(box.dataset.pullEvents);
  source.addEventListener("progress", (event) => render(box, JSON.parse(event.data)));
  const finish = (event) => {
    source.close();
    render(box, JSON.parse(event.data));
    // The server renders the outcome and the model's row.
    setTimeout(() => window.location.reload(), 300);
  };
  source.addEventListener("done", finish);
  source.addEventListener("failed", finish);
}

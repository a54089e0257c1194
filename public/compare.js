// Progressive enhancement of the compare and chat pages. Without it, the
// forms post and the server answers once every output is finished; with
// it, outputs stream into their columns and chat replies appear as they
// are generated.
"use strict";

const showError = (id, message) => {
  const box = document.getElementById(id);
  if (!box) return;
  box.textContent = message;
  box.hidden = !message;
};

// The compare form: the same fields as a JSON body for POST /api/compare,
// then the saved comparison's page, which streams.
const compareForm = document.getElementById("compare-form");
if (compareForm) {
  compareForm.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const data = new FormData(compareForm);
    const get = (key) => String(data.get(`form[${key}]`) ?? "").trim();
    const body = { model: get("model"), columns: [], settings: {} };
    for (let slot = 1; slot <= 6; slot++) {
      const column = get(`column_${slot}`);
      if (column) body.columns.push(column);
    }
    if (get("source") === "dataset") {
      body.dataset = get("dataset");
      body.split = get("split") || "valid";
      body.count = Number(get("count") || 3);
    } else {
      body.prompt = get("prompt");
      if (get("system")) body.system = get("system");
    }
    for (const key of ["max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed"]) {
      if (get(key) !== "") body.settings[key] = Number(get(key));
    }
    const button = document.getElementById("compare-start");
    if (button) button.disabled = true;
    try {
      const response = await fetch("/api/compare", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error ?? response.statusText);
      window.location.assign(`/compare/${answer.id}`);
    } catch (error) {
      showError("compare-error", error.message);
      if (button) button.disabled = false;
    }
  });
}

// A comparison being generated: `output` events carry an output's whole
// state, `text` events the next piece of its text.
const liveCompare = document.querySelector("[data-live-compare]");
if (liveCompare) {
  const source = new EventSource(liveCompare.dataset.liveCompare);
  const speeds = new Map();
  const box = (id) => document.querySelector(`[data-output="${id}"]`);
  const on = (kind, handle) =>
    source.addEventListener(kind, (message) => handle(JSON.parse(message.data)));
  on("output", (event) => {
    const element = box(event.output);
    if (!element) return;
    element.className = `output ${event.status}`;
    element.querySelector(".output-status").textContent = event.status;
    element.querySelector(".output-text").textContent = event.text ?? "";
    let error = element.querySelector(".output-error");
    if (event.error) {
      if (!error) {
        error = document.createElement("p");
        error.className = "field-error output-error";
        element.querySelector(".output-text").after(error);
      }
      error.textContent = event.error;
    }
    if ((event.status === "done" || event.status === "cancelled") && event.tokens_per_sec != null) {
      element.querySelector(".output-figures").textContent =
        `${event.generated_tokens} token${event.generated_tokens === 1 ? "" : "s"} · ${event.tokens_per_sec.toFixed(1)} tok/s · ${event.finish_reason}`;
      const column = element.dataset.column;
      if (event.tokens_per_sec > 0) {
        const list = speeds.get(column) ?? [];
        list.push(event.tokens_per_sec);
        speeds.set(column, list);
        const mean = list.reduce((a, b) => a + b, 0) / list.length;
        const cell = document.querySelector(`[data-column-speed="${column}"]`);
        if (cell) cell.textContent = mean.toFixed(1);
      }
    }
  });
  on("text", (event) => {
    const element = box(event.output);
    if (element) element.querySelector(".output-text").textContent += event.text;
  });
  on("done", () => {
    source.close();
    // The finished page has the final figures and the vote link.
    window.location.reload();
  });
}

// Chat: post the message, read the reply's SSE stream from the response;
// Stop asks the server to end the reply where it is (it keeps that much).
const chatForm = document.getElementById("chat-form");
if (chatForm) {
  const stop = document.getElementById("chat-stop");
  if (stop) {
    stop.addEventListener("click", async () => {
      stop.disabled = true;
      try {
        await fetch(`/api/chat/${chatForm.dataset.chat}/cancel`, { method: "POST" });
      } catch (error) {
        showError("chat-error", error.message);
      }
    });
  }
  const messages = document.getElementById("messages");
  const bubble = (role, text) => {
    const message = document.createElement("div");
    message.className = `message ${role}`;
    const label = document.createElement("div");
    label.className = "role muted";
    label.textContent = role;
    const content = document.createElement("pre");
    content.className = "content";
    content.textContent = text;
    message.append(label, content);
    messages.append(message);
    return content;
  };
  // Enter sends, Shift+Enter starts a new line (as chat apps do); not while
  // an input method is composing.
  document.getElementById("chat-input").addEventListener("keydown", (key) => {
    if (key.key === "Enter" && !key.shiftKey && !key.isComposing) {
      key.preventDefault();
      chatForm.requestSubmit();
    }
  });
  chatForm.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const input = document.getElementById("chat-input");
    const button = document.getElementById("chat-send");
    const text = input.value.trim();
    if (!text) return;
    showError("chat-error", "");
    button.disabled = true;
    bubble("user", text);
    input.value = "";
    const reply = bubble("assistant", "");
    reply.parentElement.classList.add("streaming");
    if (stop) {
      stop.hidden = false;
      stop.disabled = false;
    }
    try {
      const response = await fetch(`/api/chat/${chatForm.dataset.chat}/messages`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ content: text }),
      });
      if (!response.ok) throw new Error((await response.json()).error ?? response.statusText);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let kind = "message";
          let data = "";
          for (const line of frame.split("\n")) {
            if (line.startsWith("event:")) kind = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trimStart();
          }
          if (!data) continue;
          const event = JSON.parse(data);
          if (kind === "text") reply.textContent += event.text;
          else if (kind === "done") {
            reply.textContent = event.text;
            if (event.finish_reason === "cancelled") {
              reply.parentElement.classList.add("cancelled");
              const note = document.createElement("span");
              note.className = "stopped";
              note.textContent = " · stopped";
              reply.parentElement.querySelector(".role").append(note);
            }
          }
          else if (kind === "error") throw new Error(event.error);
        }
      }
    } catch (error) {
      showError("chat-error", error.message);
      reply.parentElement.remove();
    } finally {
      reply.parentElement.classList.remove("streaming");
      button.disabled = false;
      if (stop) stop.hidden = true;
    }
  });
}

// Loralab's only script: progressive enhancement. Pages work without it.
// Times are rendered by the server in UTC; show them in the viewer's zone.
"use strict";
for (const element of document.querySelectorAll("time[datetime]")) {
  const when = new Date(element.getAttribute("datetime"));
  if (!Number.isNaN(when.getTime())) element.textContent = when.toLocaleString();
}

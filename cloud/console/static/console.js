// The cabinet page's live door grid: the server pushes the grid's HTML (server-sent events)
// whenever a door opens, closes, faults, fills or changes service. No framework: EventSource
// reconnects by itself, and the label says whether the page is live.
(function () {
  "use strict";
  const doors = document.getElementById("doors");
  const label = document.getElementById("live");
  if (!doors || !doors.dataset.live || !window.EventSource) return;
  const say = (on) => {
    label.textContent = on ? label.dataset.on : label.dataset.off;
    label.classList.toggle("off", !on);
  };
  const source = new EventSource(doors.dataset.live);
  source.addEventListener("open", () => say(true));
  source.addEventListener("error", () => say(false));
  source.addEventListener("grid", (event) => {
    doors.innerHTML = event.data;
    doors.dataset.version = String(Number(doors.dataset.version || "0") + 1);
  });
  source.addEventListener("head", (event) => {
    document.getElementById("head").innerHTML = event.data;
  });
  source.addEventListener("signed-out", () => { source.close(); location.reload(); });
})();

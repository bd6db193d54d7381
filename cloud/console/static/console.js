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

// The alarms page: its table pushed again whenever an alarm is raised, repeats, is acknowledged
// or resolved; an open "acknowledge" form (a note being typed) is not replaced under the hand.
(function () {
  "use strict";
  const list = document.getElementById("alarm-list");
  const label = document.getElementById("live");
  if (!list || !list.dataset.live || !window.EventSource) return;
  const say = (on) => {
    label.textContent = on ? label.dataset.on : label.dataset.off;
    label.classList.toggle("off", !on);
  };
  let pending = null;
  const busy = () => !!list.querySelector("details.act[open]");
  const apply = () => {
    if (pending === null || busy()) return;
    list.innerHTML = pending;
    pending = null;
    list.dataset.version = String(Number(list.dataset.version || "0") + 1);
  };
  list.addEventListener("toggle", apply, true);  // a closed form lets the waiting table in
  const source = new EventSource(list.dataset.live);
  source.addEventListener("open", () => say(true));
  source.addEventListener("error", () => say(false));
  source.addEventListener("grid", (event) => { pending = event.data; apply(); });
  source.addEventListener("head", (event) => {
    document.getElementById("alarm-count").textContent = event.data;
  });
  source.addEventListener("signed-out", () => { source.close(); location.reload(); });
})();

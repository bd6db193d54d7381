// The cabinet's touchscreen: one page, every screen a <section>, no reloads in any flow.
//
// Taps become POST /api/input calls; each answer is a list of typed screens (the core's
// screens.py classes), which `show()` turns into a screen change and a message in the current
// language. Screens nobody tapped for (a door seen shut, an idle sign-out) come on the event
// stream /api/events, and so do status changes (the cloud link, a new scan-to-open QR).
// A USB scanner types like a keyboard and ends with Enter: keystrokes are caught here, since
// the page has no text inputs (digits come from the on-screen keypads).
"use strict";

const SCAN_GAP_MS = 300;      // a scanner types a whole payload faster than a person presses keys
const FIELD_MAX = { code: 12, resend: 15, courier_id: 16, pin: 12, tracking: 40, phone: 15, maint_pin: 12 };
const SIZES = ["S", "M", "L", "XL"];

const state = {
  lang: "zh-CN",
  defaultLang: "zh-CN",
  texts: {},
  status: null,
  screen: "home",
  fields: { code: "", resend: "", courier_id: "", pin: "", tracking: "", phone: "", maint_pin: "" },
  signinFocus: "courier_id",
  messages: {},             // screen name -> {key, params, tone} (re-rendered on a language switch)
  // The pickup screen's doors; `waits`: door -> "waiting" (behind another person's), "open"
  // (its turn came: unlocked) or "not_seen" (unlocked, never seen open), as the cabinet said.
  opened: { doors: [], unavailable: [], pickup: "", waits: {} },
  door: { compartment: null, closed: false },
  retrieval: { doors: [], done: new Set(), unavailable: [] },
  recipient: null,          // the PhoneAccepted screen, shown above the sizes
  lockedUntil: 0,           // the keypad's lockout, as Date.now() ms
  scanVersion: -1,
  maintToken: null,
  idleTimer: null,
  homeTimer: null,          // "back home" after the last door of a pickup, until another screen
  busy: false,
  // Screens the person chose with a tap of their own (Courier, Back...), counted: an answer
  // to an earlier tap that comes back after such a move is stale and may not change the screen.
  moves: 0,
  statusSeq: null,          // {boot, n} of the status held: an older one arriving late is dropped
};

const $ = (id) => document.getElementById(id);

// --- text -------------------------------------------------------------------------------------

function lookup(key) {
  let node = state.texts[state.lang];
  for (const part of key.split(".")) node = node == null ? undefined : node[part];
  return node;
}

// A list (of doors) is joined as the language lists things: "A02, A03" or "A02、A03".
function fill(template, params) {
  return String(template).replace(/\{(\w+)\}/g, (_, name) => {
    const value = params && params[name];
    if (value === undefined) return "";
    return Array.isArray(value) ? value.join(lookup("ui.list_separator")) : String(value);
  });
}

function timeLeft(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  const m = Math.floor(s / 60);
  return m ? fill(lookup("ui.minutes_seconds"), { m, s: s % 60 }) : fill(lookup("ui.seconds"), { s });
}

// The text of one screen from screens.py, in the current language.
function screenText(screen) {
  let template = lookup("screens." + screen.type);
  if (template && typeof template === "object") {
    const variant = screen.type === "SignedOut" ? (screen.idle ? "idle" : "manual") : screen.problem;
    template = template[variant];
  }
  if (template === undefined) return lookup("ui.error");
  const params = { ...screen };
  if ("seconds_left" in screen) params.time_left = timeLeft(screen.seconds_left);
  if (screen.size) params.size = screen.size;
  return fill(template, params);
}

function translatePage() {
  document.documentElement.lang = state.lang;
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = lookup(el.dataset.t) ?? "";
  for (const el of document.querySelectorAll("[data-tp]")) el.dataset.placeholder = lookup(el.dataset.tp) ?? "";
  renderDynamic();
}

// --- messages ---------------------------------------------------------------------------------

const TONES = {
  WrongCode: "bad", WrongPin: "bad", UnknownCourier: "bad", CourierLocked: "bad", KeypadLocked: "bad",
  MalformedCode: "warn", UnreadableQr: "bad", WrongCabinet: "bad", CodeExpired: "warn", ResendTooSoon: "warn",
  TrackingRejected: "bad", PhoneRejected: "bad", NoFreeDoor: "warn", NoLargerDoor: "warn",
  DoorFaulted: "bad", DoorMoved: "warn", CloseDoor: "warn", NothingToRetrieve: "warn",
  ReservationRefused: "bad",
};

// Put a message on a screen: `what` is a screen (from the core) or {ui: key, params}.
function say(where, what, tone) {
  state.messages[where] = { what, tone: tone || TONES[what.type] || "ok" };
  renderMessage(where);
  if (where === "door") renderDoor();
}

function clearMsg(where) {
  delete state.messages[where];
  renderMessage(where);
}

function renderMessage(where) {
  const el = $(where + "-msg");
  if (!el) return;
  const m = state.messages[where];
  el.className = "msg" + (m ? " " + m.tone : "");
  if (!m) { el.textContent = ""; return; }
  if (m.what.type === "KeypadLocked") {
    el.textContent = screenText({ type: "KeypadLocked", seconds_left: (state.lockedUntil - Date.now()) / 1000 });
  } else if (m.what.ui) {
    el.textContent = fill(lookup("ui." + m.what.ui), m.what.params);
  } else {
    el.textContent = screenText(m.what);
  }
}

// --- screens ----------------------------------------------------------------------------------

function go(screen) {
  if (state.screen !== screen) {
    if (state.screen === "opened") pickupClosed(state.opened.pickup);
    for (const el of document.querySelectorAll(".screen")) el.hidden = el.id !== "s-" + screen;
    state.screen = screen;
    clearTimeout(state.homeTimer);  // a timer set for the screen left must not end the new one
    state.homeTimer = null;
  }
  renderDynamic();
}

// The person taps their way to another screen: whatever an earlier tap's answer says when it
// lands after this, the screen stays where they went (see `send`).
function move(screen) {
  state.moves += 1;
  if (screen === "home") goHome(); else go(screen);
}

function goHome() {
  for (const f of ["code", "resend", "courier_id", "pin", "maint_pin"]) state.fields[f] = "";
  state.signinFocus = "courier_id";
  go("home");
}

function renderDynamic() {
  const st = state.status;
  $("cabinet-id").textContent = st ? cabinetName(st) : "";
  $("offline").hidden = !st || st.online;
  renderFields();
  renderScan();
  renderCourier();
  renderSizes();
  renderDoor();
  renderOpened();
  renderRetrieval();
  renderRemoteOpen();
  for (const where of Object.keys(state.messages)) renderMessage(where);
  const locked = state.lockedUntil > Date.now();
  for (const key of document.querySelectorAll('.keypad[data-field="code"] .key')) key.disabled = locked;
}

// The cabinet's name in the screen's language (the config's), its id when it has none.
function cabinetName(st) {
  const names = st.cabinet_name || {};
  return names[state.lang] || names["zh-CN"] || names.en || st.cabinet_id;
}

// A door opened from a phone (or the dashboard) stands open: say so on every recipient screen.
function renderRemoteOpen() {
  const st = state.status;
  const doors = (st && st.remote_open) || [];
  const banner = $("remote-open");
  const show = doors.length > 0 && !state.screen.startsWith("courier-") && !state.screen.startsWith("maint");
  banner.hidden = !show;
  banner.textContent = show ? fill(lookup("ui.remote_open"), { compartments: doors.join(", ") }) : "";
}

function renderFields() {
  const f = state.fields;
  $("code-display").textContent = f.code;
  $("resend-display").textContent = f.resend;
  $("tracking-display").textContent = f.tracking;
  $("phone-display").textContent = f.phone;
  $("maint-pin-display").textContent = "•".repeat(f.maint_pin.length);
  const id = $("courier-id-display"), pin = $("pin-display");
  id.querySelector(".value").textContent = f.courier_id;
  pin.querySelector(".value").textContent = "•".repeat(f.pin.length);
  id.classList.toggle("focused", state.signinFocus === "courier_id");
  pin.classList.toggle("focused", state.signinFocus === "pin");
  const slot = $("signin-keys");
  const wanted = state.signinFocus === "pin" ? "keypad" : "keyboard";
  if (slot.dataset.kind !== wanted) {
    slot.dataset.kind = wanted;
    slot.innerHTML = "";
    const keys = document.createElement("div");
    keys.className = wanted;
    keys.dataset.field = state.signinFocus;
    slot.appendChild(keys);
    buildKeys(keys);
  } else {
    slot.firstChild.dataset.field = state.signinFocus;
  }
}

function renderScan() {
  const scan = state.status && state.status.scan;
  const img = $("scan-img"), off = $("scan-off");
  if (scan && scan.available) {
    if (scan.version !== state.scanVersion) {
      state.scanVersion = scan.version;
      img.src = "/api/scan-qr?v=" + scan.version;
    }
    img.hidden = false;
    off.hidden = true;
  } else {
    img.hidden = true;
    off.hidden = false;
  }
}

function renderCourier() {
  const st = state.status;
  const courier = st && st.courier;
  $("courier-who").textContent = courier ? courier.courier_id : "";
  $("courier-count").textContent = fill(lookup("ui.deposited_count"), { count: courier ? courier.deposited : 0 });
  $("retrieve").textContent = fill(lookup("ui.retrieve"), { count: st ? st.retrievals_due : 0 });
  $("retrieve").disabled = !(st && st.retrievals_due);
  $("phone-tracking").textContent = courier && courier.tracking_no ? courier.tracking_no : "";
  $("size-recipient").textContent = state.recipient ? screenText(state.recipient) : "";
}

function renderSizes() {
  const box = $("sizes");
  const free = (state.status && state.status.free_by_size) || {};
  if (!box.childElementCount) {
    for (const size of SIZES) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "size";
      b.dataset.size = size;
      b.innerHTML = '<span class="letter"></span><span class="name"></span><span class="free"></span>';
      b.addEventListener("click", () => send("SizeChosen", { size }));
      box.appendChild(b);
    }
  }
  for (const b of box.children) {
    const size = b.dataset.size, count = free[size] || 0;
    b.querySelector(".letter").textContent = size;
    b.querySelector(".name").textContent = lookup("ui.size_names")[size];
    b.querySelector(".free").textContent = fill(lookup("ui.free"), { count });
    b.classList.toggle("none", count === 0);
  }
}

function doorLabel(id) {
  return '<span class="label">' + lookup("ui.door") + "</span>" + id;
}

function renderDoor() {
  const d = state.door;
  $("door-number").innerHTML = d.compartment ? doorLabel(d.compartment) : "";
  $("confirm").disabled = !d.closed;
  // While the door stands open it is already open: "open again" would do nothing.
  const courier = state.status && state.status.courier;
  const open = Boolean(courier && courier.door_open && courier.compartment === d.compartment);
  $("reopen").disabled = open;
  const said = state.messages.door && state.messages.door.what.ui === "refused_door_open";
  $("door-open-hint").hidden = !open || said;  // not twice when a refused tap just said it
  $("door-open-hint").textContent = open ? fill(lookup("ui.refused_door_open"), { compartment: d.compartment }) : "";
}

// One tile per door, side by side, each saying where it stands when the cabinet told us (a door
// waiting behind another person's is not "open": the title says to wait until one is).
function renderOpened() {
  const o = state.opened;
  const tiles = $("opened-doors");
  tiles.innerHTML = "";
  tiles.classList.toggle("many", o.doors.length > 1);
  for (const id of o.doors) {
    const tile = document.createElement("span");
    tile.className = "door-tile";
    tile.dataset.compartment = id;
    tile.innerHTML = doorLabel(id);
    const wait = o.waits[id];
    if (wait) {
      tile.dataset.wait = wait;
      const line = document.createElement("span");
      line.className = "door-wait";
      line.textContent = lookup("ui.door_wait_states." + wait);
      tile.appendChild(line);
    }
    tiles.appendChild(tile);
  }
  tiles.hidden = !o.doors.length;
  const allWait = o.doors.length > 0 && o.doors.every((id) => o.waits[id] === "waiting");
  $("opened-title").textContent = lookup(allWait ? "ui.doors_wait_title"
    : o.doors.length > 1 ? "ui.doors_open_title_many" : "ui.doors_open_title");
  $("opened-unavailable").textContent = o.unavailable.length
    ? fill(lookup("ui.unavailable_doors"), { compartments: o.unavailable }) : "";
}

function renderRetrieval() {
  const r = state.retrieval;
  const list = $("retrieve-list");
  list.innerHTML = "";
  for (const id of r.doors) {
    const li = document.createElement("li");
    li.dataset.compartment = id;
    const done = r.done.has(id);
    li.className = done ? "done" : "";
    li.innerHTML = '<span class="id"></span><span class="what"></span>';
    li.querySelector(".id").textContent = id;
    li.querySelector(".what").textContent = lookup(done ? "ui.retrieve_done" : "ui.retrieve_waiting");
    list.appendChild(li);
  }
  for (const id of r.unavailable) {
    const li = document.createElement("li");
    li.className = "unavailable";
    li.innerHTML = '<span class="id"></span>';
    li.querySelector(".id").textContent = id;
    list.appendChild(li);
  }
  $("retrieve-instruction").textContent = lookup("screens.RetrievalOpening");
}

// --- an announced parcel (a door reserved for it) ------------------------------------------------

// Found: the masked phone and reserved size to check, and one tap opens the door. Refused (the
// shipment is another carrier's, or the reservation ended): back to the tracking number.
function showReservation(screen) {
  if (screen.type === "ReservationFound") {
    say("reserved", screen);
    go("courier-reserved");
  } else {
    state.fields.tracking = "";
    say("tracking", screen);
    go("courier-tracking");
  }
}

// --- what the cabinet said --------------------------------------------------------------------

function show(screen) {
  switch (screen.type) {
    // courier sign-in
    case "SignedIn":
      state.fields.pin = ""; state.fields.tracking = "";
      say("tracking", screen);
      go("courier-tracking");
      break;
    case "UnknownCourier": case "WrongPin": case "CourierLocked":
      state.fields.pin = "";
      say("signin", screen);
      renderFields();
      break;
    case "SignedOut":
      state.fields.tracking = ""; state.fields.phone = "";
      // Only the courier's own screens end with their session: a page that went home already
      // (the status said so first) may be on the next person's sign-in by now.
      if (onCourierScreen()) goHome();
      say("home", screen, "ok");
      break;
    // deposit
    case "TrackingAccepted":
      state.fields.phone = "";
      clearMsg("phone");
      go("courier-phone");
      break;
    case "TrackingRejected":
      say("tracking", screen);
      break;
    case "ReservationFound": case "ReservationRefused":
      showReservation(screen);
      break;
    case "PhoneAccepted":
      if (state.status) state.status.free_by_size = screen.free_by_size;
      state.recipient = screen;
      clearMsg("size");
      go("courier-size");
      break;
    case "PhoneRejected":
      say(state.screen === "resend" ? "resend" : "phone", screen);
      break;
    case "NoFreeDoor":
      say({ "courier-door": "door", "courier-reserved": "reserved" }[state.screen] || "size", screen);
      break;
    case "NoLargerDoor": case "DoorMoved": case "DoorFaulted":
      say("door", screen);
      break;
    case "DepositDoorOpening":
      state.door = { compartment: screen.compartment, closed: false };
      clearMsg("door");
      go("courier-door");
      break;
    case "DepositDoorClosed":
      if (state.door.compartment === screen.compartment) state.door.closed = true;
      say("door", screen);
      renderDoor();
      break;
    case "DepositEmpty":
      say("door", screen, "warn");
      renderDoor();
      break;
    case "ParcelStillInside":
      if (state.screen === "opened") say("opened", screen, "warn");
      else if (state.screen === "courier-retrieve") say("retrieve", screen, "warn");
      else say("home", screen, "warn");
      break;
    case "Deposited":
      state.fields.tracking = ""; state.door = { compartment: null, closed: false };
      say("tracking", screen);
      go("courier-tracking");
      break;
    case "DepositCancelled":
      state.fields.tracking = ""; state.door = { compartment: null, closed: false };
      say("tracking", screen, "warn");
      go("courier-tracking");
      break;
    // retrieval
    case "RetrievalOpening":
      state.retrieval = { doors: screen.compartments, done: new Set(), unavailable: screen.unavailable };
      clearMsg("retrieve");
      go("courier-retrieve");
      break;
    case "NothingToRetrieve":
      say("tracking", screen);
      break;
    case "ParcelRetrievedShown":
      state.retrieval.done.add(screen.compartment);
      say("retrieve", screen);
      renderRetrieval();
      break;
    // pickup
    case "DoorsOpening":
      state.fields.code = "";
      if (!screen.compartments.length) {  // every door of theirs is faulted: nothing opens
        say("home", { ui: "unavailable_doors", params: { compartments: screen.unavailable.join(", ") } }, "bad");
        renderFields();
        break;
      }
      state.opened = {
        doors: screen.compartments,
        unavailable: screen.unavailable,
        pickup: screen.pickup,
        waits: Object.fromEntries(screen.after_others ? screen.compartments.map((id) => [id, "waiting"]) : []),
      };
      clearMsg("opened");
      go("opened");
      // Another person's door opens first: say so at once, or the person stares at a shut door.
      if (screen.after_others) {
        const waits = screen.compartments.length > 1 ? "doors_wait" : "door_waits";
        say("opened", { ui: waits, params: { compartments: screen.compartments } }, "warn");
      }
      break;
    case "DoorNowOpening":  // the door that waited is being unlocked now
    case "DoorNotSeenOpen":  // unlocked, never seen open: the parcel and the code stay good
      if (state.screen === "opened" && state.opened.doors.includes(screen.compartment)) {
        state.opened.waits[screen.compartment] = screen.type === "DoorNotSeenOpen" ? "not_seen" : "open";
        say("opened", screen, screen.type === "DoorNotSeenOpen" ? "warn" : "ok");
        renderOpened();
      }
      break;
    case "WrongCode": case "CodeExpired": case "MalformedCode": case "UnreadableQr": case "WrongCabinet":
      state.fields.code = "";
      say(recipientScreen(), screen);
      renderFields();
      break;
    case "KeypadLocked":
      state.fields.code = "";
      state.lockedUntil = Date.now() + screen.seconds_left * 1000;
      say(recipientScreen(), screen);
      renderDynamic();
      break;
    case "ResendTooSoon":
      say("resend", screen);
      break;
    case "ResendAccepted":
      goHome();
      say("home", screen);
      break;
    case "ParcelTaken":
      if (state.screen === "opened") {
        say("opened", screen);
        state.opened.doors = state.opened.doors.filter((d) => d !== screen.compartment);
        if (!state.opened.doors.length) { clearTimeout(state.homeTimer); state.homeTimer = setTimeout(goHome, 2500); }
      } else {
        say("home", screen);
      }
      break;
    case "CloseDoor":
      say(state.screen === "opened" ? "opened" : state.screen === "courier-door" ? "door" : "home", screen);
      break;
    default:
      console.warn("unknown screen", screen);
  }
}

// A screen of a signed-in courier's (the sign-in itself is not: nobody is signed in there).
function onCourierScreen() {
  return state.screen.startsWith("courier-") && state.screen !== "courier-signin";
}

function recipientScreen() {
  return state.screen === "opened" ? "opened" : "home";
}

// --- talking to the cabinet -------------------------------------------------------------------

// The pickup screen ended (Done, back home, the idle timeout, another flow): the cabinet drops
// its doors still waiting in the queue, so none springs open later with nobody there. Not
// through `send`: it must go even while another tap is in flight, and it changes no screen.
// It names its pickup, so one arriving after a newer code's answer drops nothing of that one.
function pickupClosed(pickup) {
  fetch("/api/input", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ type: "PickupClosed", pickup }),
  }).catch((err) => console.warn("PickupClosed", err));
}

// Every POST is JSON: the kiosk refuses any other (so another site's form cannot post to it).
function keypadActive() {
  fetch("/api/keypad-active", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: "{}",
  });
}

async function send(type, fields) {
  if (state.busy) return null;
  state.busy = true;
  const moves = state.moves;
  try {
    const answer = await fetch("/api/input", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ type, ...(fields || {}) }),
    });
    const body = await answer.json();
    if (state.moves !== moves) {  // the person went elsewhere meanwhile: their screen stays
      refreshStatus();
      return null;
    }
    if (answer.ok) {
      for (const screen of body.screens) show(screen);
      refreshStatus();
      return body.screens;
    }
    console.warn(type, answer.status, body.error);
    await refreshStatus();
    resync();
    say(currentMsgSlot(), refusal(answer.status, body), "warn");
  } catch (err) {
    console.warn(type, err);
    say(currentMsgSlot(), { ui: "error" }, "bad");
  } finally {
    state.busy = false;
  }
  return null;
}

// What a refused tap says: the reason the cabinet gave (body.state), as what to do next.
function refusal(status, body) {
  if (status !== 409) return { ui: "error" };
  const compartment = state.door.compartment || "";
  const by = {
    door_open: "refused_door_open",
    door_unlocking: "refused_unlocking",
    door_not_cycled: "refused_not_cycled",
    courier: "refused_courier",
  };
  return { ui: by[body && body.state] || "not_now", params: { compartment } };
}

function currentMsgSlot() {
  return {
    "home": "home", "opened": "opened", "resend": "resend", "courier-signin": "signin",
    "courier-tracking": "tracking", "courier-phone": "phone", "courier-size": "size",
    "courier-door": "door", "courier-retrieve": "retrieve", "courier-reserved": "reserved", "maint-signin": "maint-signin", "maint": "maint",
  }[state.screen];
}

async function refreshStatus() {
  try {
    const answer = await fetch("/api/status");
    if (answer.ok) setStatus(await answer.json());
  } catch (err) {
    console.warn("status", err);
  }
}

// A status arrives by two roads, GET /api/status and the event stream, and one can overtake
// the other: a status computed before the one held (a smaller n of the same boot) is old news.
function isStale(seq) {
  const held = state.statusSeq;
  return Boolean(seq && held && seq.boot === held.boot && seq.n <= held.n);
}

function setStatus(status) {
  if (isStale(status.seq)) return;
  state.statusSeq = status.seq || null;
  const wasCourier = state.status && state.status.courier_signed_in;
  state.status = status;
  if (status.keypad_locked_s > 0) state.lockedUntil = Date.now() + status.keypad_locked_s * 1000;
  if (wasCourier && !status.courier_signed_in && onCourierScreen()) goHome();
  renderDynamic();
}

// Put the screen where the cabinet is: after a (re)connect or a refused tap.
function resync() {
  const st = state.status;
  if (!st) return;
  const courier = st.courier;
  if (courier) {
    if (courier.step === "at_door") {
      state.door = { compartment: courier.compartment, closed: courier.door_cycled };
      go("courier-door");
    } else if (courier.step === "phone") {
      go("courier-phone");
    } else if (courier.step === "size") {
      go("courier-size");
    } else if (courier.step === "reserved") {
      if (courier.reserved) say("reserved", courier.reserved);
      go("courier-reserved");
    } else if (state.screen !== "courier-retrieve") {
      go("courier-tracking");
    }
  } else if (onCourierScreen()) {
    goHome();
  }
}

function listen() {
  const events = new EventSource("/api/events");
  events.addEventListener("screen", (e) => show(JSON.parse(e.data)));
  events.addEventListener("status", (e) => setStatus(JSON.parse(e.data)));
  events.addEventListener("open", () => refreshStatus());
}

// --- keypads ----------------------------------------------------------------------------------

const DIGITS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "del", "0", "go"];
const KEYBOARD = [
  ..."1234567890", ..."QWERTYUIOP", ..."ASDFGHJKL-", ..."ZXCVBNM", "del", "go",  // go: 2 wide
];

function buildKeys(container) {
  const keys = container.classList.contains("keyboard") ? KEYBOARD : DIGITS;
  for (const k of keys) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "key" + (k === "go" ? " go" : k.length > 1 ? " fn" : "");
    b.dataset.key = k;
    if (k === "del") b.textContent = "⌫";
    else if (k === "clear") b.dataset.t = "ui.clear";
    else if (k === "go") b.dataset.t = "ui.open";
    else b.textContent = k;
    b.addEventListener("click", () => press(container.dataset.field, k));
    container.appendChild(b);
  }
  // The go key says what it does on each screen.
  const go = container.querySelector('[data-key="go"]');
  go.dataset.t = { code: "ui.open", resend: "ui.send", courier_id: "ui.next", pin: "ui.sign_in",
    tracking: "ui.next", phone: "ui.next", maint_pin: "ui.sign_in" }[container.dataset.field] || "ui.next";
  for (const el of container.querySelectorAll("[data-t]")) el.textContent = lookup(el.dataset.t) ?? "";
}

function press(field, key) {
  const f = state.fields;
  if (key === "go") return submitField(field);
  if (key === "del") f[field] = f[field].slice(0, -1);
  else if (key === "clear") f[field] = "";
  else if (f[field].length < FIELD_MAX[field]) {
    if (field === "code" && f.code === "") keypadActive();
    f[field] += key;
  }
  renderFields();
}

function submitField(field) {
  const f = state.fields;
  switch (field) {
    case "code":
      if (f.code) send("CodeEntered", { code: f.code });
      break;
    case "resend":
      send("ResendRequested", { phone: f.resend });
      break;
    case "courier_id":
      state.signinFocus = "pin";
      renderFields();
      break;
    case "pin":
      signIn();
      break;
    case "tracking":
      send("TrackingEntered", { tracking_no: f.tracking });
      break;
    case "phone":
      send("PhoneEntered", { phone: f.phone });
      break;
    case "maint_pin":
      maintSignIn();
      break;
  }
}

function signIn() {
  const f = state.fields;
  if (!f.courier_id) { state.signinFocus = "courier_id"; renderFields(); return; }
  if (!f.pin) { state.signinFocus = "pin"; renderFields(); return; }
  send("CourierSignIn", { courier_id: f.courier_id, pin: f.pin });
}

// --- the scanner (a USB scanner types like a keyboard, then Enter) ----------------------------

const scanner = { buffer: "", last: 0 };

function onKey(event) {
  if (event.ctrlKey || event.altKey || event.metaKey) return;
  const now = Date.now();
  if (now - scanner.last > SCAN_GAP_MS) scanner.buffer = "";
  scanner.last = now;
  if (event.key === "Enter") {
    event.preventDefault();   // never a "click" on whatever button was tapped last
    const payload = scanner.buffer.trim();
    scanner.buffer = "";
    if (payload) scanned(payload);
    return;
  }
  if (event.key.length === 1) {
    // A scanned pickup QR opens a door like a typed code: keep the bus free for its unlock.
    if (!scanner.buffer && state.screen === "home" && !(state.status && state.status.courier_signed_in)) {
      keypadActive();
    }
    scanner.buffer += event.key;
    event.preventDefault();
  }
}

function scanned(payload) {
  touched();
  const courier = state.status && state.status.courier_signed_in;
  if (courier) {
    if (["courier-tracking", "courier-phone", "courier-size", "courier-reserved"].includes(state.screen)) {
      state.fields.tracking = payload.toUpperCase();
      renderFields();
      send("TrackingEntered", { tracking_no: payload });
    }
    return;
  }
  if (!["home", "opened", "resend"].includes(state.screen)) return;
  if (state.screen !== "home") go("home");
  const digits = state.status ? state.status.code_digits : 8;
  if (/^[0-9]+$/.test(payload) && payload.length === digits) send("CodeEntered", { code: payload });
  else send("QrScanned", { payload });
}

// --- maintenance ------------------------------------------------------------------------------

async function maintCall(path, body) {
  const answer = await fetch("/api/maintenance/" + path, {
    method: body === undefined ? "GET" : "POST",
    headers: { "Content-Type": "application/json", "X-Maintenance-Token": state.maintToken || "" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: answer.status, body: await answer.json() };
}

async function maintSignIn() {
  const pin = state.fields.maint_pin;
  state.fields.maint_pin = "";
  renderFields();
  if (!pin) return;
  const { status, body } = await maintCall("sign-in", { pin });
  if (status === 200) {
    state.maintToken = body.token;
    clearMsg("maint");
    go("maint");
    maintRefresh();
  } else if (status === 403) {
    say("maint-signin", { ui: "wrong_technician_pin", params: body }, "bad");
  } else if (status === 429) {
    say("maint-signin", { ui: "technician_locked", params: { time_left: timeLeft(body.seconds_left) } }, "bad");
  } else {
    say("maint-signin", { ui: "maintenance_off" }, "warn");
  }
}

async function maintRefresh() {
  if (state.screen !== "maint") return;
  const { status, body } = await maintCall("status");
  if (status !== 200) { state.maintToken = null; goHome(); return; }
  const grid = $("maint-doors");
  grid.innerHTML = "";
  for (const d of body.doors) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.compartment = d.compartment;
    b.className = ["door", d.state, d.door === "open" ? "open" : "", d.board_faulted ? "board-faulted" : ""].join(" ");
    b.innerHTML = '<span class="id"></span><span class="what"></span>';
    b.querySelector(".id").textContent = d.compartment;
    b.querySelector(".what").textContent = [
      lookup("ui.size_names")[d.size] || d.size,
      lookup("ui.door_state_names")[d.state] || d.state,
      lookup("ui.door_names")[d.door] || d.door,
    ].join(" · ");
    // A door with a parcel stays tappable: the tap says where it is opened instead (the
    // operations console's remote open, with a reason), which a greyed-out button never would.
    b.classList.toggle("holds-parcel", d.holds_parcel);
    b.addEventListener("click", () => maintOpen(d.compartment, d.holds_parcel));
    grid.appendChild(b);
  }
  const table = $("maint-bus");
  table.innerHTML = "";
  const row = (name, value, bad) => {
    const tr = table.insertRow();
    tr.insertCell().textContent = name;
    const td = tr.insertCell();
    td.textContent = value;
    td.className = "n" + (bad ? " bad" : "");
  };
  const counters = lookup("ui.counter_names");
  for (const part of body.driver.drivers || [body.driver]) {
    row(part.driver, (part.port || part.name || "").split("/").pop());
    for (const [address, health] of Object.entries(part.boards || {})) {
      row(fill(lookup("ui.board"), { address }),
        lookup(health.faulted ? "ui.board_faulted" : "ui.board_ok"), health.faulted);
      for (const key of Object.keys(counters)) {
        if (key in health) row("\u2003" + counters[key], health[key], key !== "requests" && health[key] > 0);
      }
    }
    if (part.line) for (const [key, value] of Object.entries(part.line)) {
      row(fill(lookup("ui.line"), { name: counters[key] || key.replace(/_/g, " ") }), value);
    }
    for (const [door, doorCounters] of Object.entries(part.doors || {})) {
      row(door, Object.entries(doorCounters).map(([k, v]) => (counters[k] || k.replace(/_/g, " ")) + " " + v).join(", "));
    }
  }
  row(lookup("ui.cloud"), lookup(body.status.online ? "ui.online" : "ui.offline_short"), !body.status.online);
}

async function maintOpen(compartment, holdsParcel) {
  const { status, body } = await maintCall("open", { compartment });
  if (status === 200) say("maint", { ui: "test_open_sent", params: { compartment } });
  else if (status === 409 && holdsParcel) say("maint", { ui: "maint_holds_parcel", params: { compartment } }, "warn");
  else say("maint", { ui: "not_now" }, "warn");
  console.info("maintenance open", compartment, status, body);
  maintRefresh();
}

// --- idle -------------------------------------------------------------------------------------

function touched() {
  clearTimeout(state.idleTimer);
  const idle_s = state.status ? state.status.idle_s : 60;
  state.idleTimer = setTimeout(idle, idle_s * 1000);
}

// Nobody touched the screen for idle_s: back home in the default language. A signed-in
// courier stays (the cabinet signs them out itself after its own idle time, and says so).
function idle() {
  if (state.status && state.status.courier_signed_in) { touched(); return; }
  if (state.screen === "maint" || state.screen === "maint-signin") {
    if (state.maintToken) maintCall("sign-out", {});
    state.maintToken = null;
  }
  state.messages = {};
  state.lang = state.defaultLang;
  translatePage();
  move("home");
}

// --- wiring -----------------------------------------------------------------------------------

function wire() {
  for (const k of document.querySelectorAll(".keypad, .keyboard")) if (k.dataset.field) buildKeys(k);
  for (const b of document.querySelectorAll("[data-go]")) {
    b.addEventListener("click", () => move(b.dataset.go));
  }
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "zh-CN" ? "en" : "zh-CN";
    translatePage();
    maintRefresh();  // the door grid and the bus table are drawn from the words, too
  });
  $("no-code").addEventListener("click", () => { state.fields.resend = ""; clearMsg("resend"); move("resend"); });
  $("resend-send").addEventListener("click", () => submitField("resend"));
  $("go-courier").addEventListener("click", () => {
    state.fields.courier_id = ""; state.fields.pin = ""; state.signinFocus = "courier_id";
    clearMsg("signin");
    move("courier-signin");
  });
  $("go-maintenance").addEventListener("click", () => { state.fields.maint_pin = ""; clearMsg("maint-signin"); move("maint-signin"); });
  $("maint-sign-in").addEventListener("click", maintSignIn);
  $("maint-sign-out").addEventListener("click", () => { maintCall("sign-out", {}); state.maintToken = null; move("home"); });
  for (const el of document.querySelectorAll("[data-focus]")) {
    el.addEventListener("click", () => { state.signinFocus = el.dataset.focus; renderFields(); });
  }
  $("sign-in").addEventListener("click", signIn);
  $("tracking-next").addEventListener("click", () => submitField("tracking"));
  $("phone-next").addEventListener("click", () => submitField("phone"));
  $("retrieve").addEventListener("click", () => send("RetrieveParcels"));
  $("sign-out").addEventListener("click", () => send("CourierSignOut"));
  $("confirm").addEventListener("click", () => send("Confirm"));
  $("reopen").addEventListener("click", () => send("Reopen"));
  $("larger").addEventListener("click", () => send("Larger"));
  $("cancel").addEventListener("click", () => send("Cancel"));
  $("open-reserved").addEventListener("click", () => send("OpenReserved"));
  $("scan-img").addEventListener("error", () => { $("scan-img").hidden = true; $("scan-off").hidden = false; });
  document.addEventListener("keydown", onKey);
  document.addEventListener("pointerdown", touched, { passive: true });
  document.addEventListener("contextmenu", (e) => e.preventDefault());  // a long press is a tap
  // A tapped button must not keep the focus: the scanner's keystrokes belong to the page.
  document.addEventListener("mousedown", (e) => { if (e.target.closest("button")) e.preventDefault(); });
  // A lockout counts down on screen, second by second.
  setInterval(() => {
    if (state.lockedUntil && state.lockedUntil <= Date.now()) {
      state.lockedUntil = 0;
      for (const where of ["home", "opened"]) {
        const m = state.messages[where];
        if (m && m.what.type === "KeypadLocked") delete state.messages[where];
      }
      renderDynamic();
    }
    if (state.lockedUntil) for (const where of ["home", "opened"]) {
      const m = state.messages[where];
      if (m && m.what.type === "KeypadLocked") renderMessage(where);
    }
  }, 1000);
  setInterval(() => { if (state.screen === "maint") maintRefresh(); }, 3000);
}

async function start() {
  const texts = await (await fetch("/api/i18n")).json();
  state.texts = texts.languages;
  state.lang = state.defaultLang = texts.default;
  wire();
  translatePage();
  await refreshStatus();
  resync();
  listen();
  touched();
  document.body.dataset.ready = "true";   // for the browser tests: the page is wired
}

start();

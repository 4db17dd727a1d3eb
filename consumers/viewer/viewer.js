// camring viewer: one WebSocket to the server (docs/protocol.md), a grid of cameras.
// Binary messages go straight to worker.js (their ArrayBuffer transferred), which parses,
// decodes and draws them on canvases transferred to it; this thread handles the JSON
// messages, the controls and the counters.

const WS_PARAMS = ["token", "quality", "max_width", "max_height", "fps", "skip", "cameras"];
const DEFAULTS = { quality: 80, max_width: 0, max_height: 0, fps: 0, skip: 1, cameras: "all" };
const MAX_BACKOFF_MS = 10000;
const MAX_LOG_LINES = 100;

const $ = (id) => document.getElementById(id);

/** Live counters, read by tests (tests/browser/viewer_check.mjs) and the curious. */
const viewer = {
  connected: false, // the WebSocket is open
  connections: 0, // how many times it opened: settings changes must not reconnect
  status: "connecting",
  messages: 0, // WebSocket messages received, text and binary
  binaryMessages: 0,
  producer: null, // from `state`: waiting, live, stopped, dead
  settings: null, // this client's effective settings, from `state`
  paused: false,
  clockOffsetMs: 0, // estimated server clock − browser clock
  cameras: [], // per camera: {id, framesReceived, framesDrawn, skipped, lastFrame, ...}
  camerasAt: 0, // when the worker counted them (Date.now())
  displayFps: 0, // mean of the cameras' display rates
  serverErrors: [], // `error` messages
  invalidMessages: 0, // binary messages that did not parse
};
window.camringViewer = viewer;

// The WebSocket carries the page's own settings parameters: http://host:8080/?token=abc
// connects to ws://host:8080/ws?token=abc. Once connected, `params` follows the effective
// settings, so a reconnection keeps what was chosen since.
const pageParams = new URLSearchParams(location.search);
const params = new URLSearchParams();
for (const key of WS_PARAMS) if (pageParams.has(key)) params.set(key, pageParams.get(key));

// /metrics needs the token too, when the server has one.
if (params.has("token")) $("metrics").search = new URLSearchParams({ token: params.get("token") });

const worker = new Worker(new URL("worker.js", import.meta.url));
const tiles = new Map(); // camera id → its tile (see tile())

// --- Server clock -------------------------------------------------------------------------
// Latency is capture_ns (the producer's clock, on the server's machine) to the moment this
// page receives the message (the browser's clock). The two clocks may differ by far more
// than the latency, so we estimate offset = server clock − browser clock from the
// `time_ms` of `stats` messages. A sample time_ms − (browser time at arrival) equals the
// offset minus the message's travel time, so it never exceeds the offset; the largest of the
// recent samples is the one that travelled fastest and the best estimate. What remains is
// that smallest travel time (and time_ms's 1 ms resolution), which the latency shown then
// leaves out. Only recent samples are kept so that clock adjustments are followed.
const clockSamples = [];
function addClockSample(serverMs, receivedMs) {
  clockSamples.push(serverMs - receivedMs);
  if (clockSamples.length > 20) clockSamples.shift();
  viewer.clockOffsetMs = Math.max(...clockSamples);
}

// --- Connection ---------------------------------------------------------------------------
let ws = null;
let failures = 0; // consecutive connections that ended before a `state` arrived
let wantPaused = false;

function connect() {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = params.toString();
  setStatus("connecting", failures ? `reconnecting (attempt ${failures + 1})…` : "connecting…");
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    ws = socket;
    viewer.connected = true;
    viewer.connections++;
    setStatus("open", "connected");
    if (wantPaused) send({ type: "pause" });
  };
  socket.onmessage = (ev) => {
    viewer.messages++;
    const receivedMs = performance.timeOrigin + performance.now();
    if (typeof ev.data === "string") {
      onText(ev.data, receivedMs);
    } else {
      viewer.binaryMessages++;
      const offsetMs = viewer.clockOffsetMs;
      worker.postMessage({ type: "frame", buffer: ev.data, receivedMs, offsetMs }, [ev.data]);
    }
  };
  // An error is always followed by a close; a refused upgrade (401, 400, 503) too, with
  // code 1006 and no reason: browsers do not show the HTTP status to pages.
  socket.onclose = (ev) => {
    ws = null;
    viewer.connected = false;
    failures++;
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** (failures - 1)) * (0.8 + 0.4 * Math.random());
    const why = ev.reason ? `${ev.code} ${ev.reason}` : `code ${ev.code}`;
    setStatus("closed", `disconnected (${why}); reconnecting in ${(delay / 1000).toFixed(1)} s`);
    setTimeout(connect, delay);
  };
}

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function setStatus(state, text) {
  viewer.status = text;
  $("status").dataset.state = state;
  $("status").textContent = text;
}

// --- JSON messages from the server --------------------------------------------------------
let lastStats = null;

function onText(text, receivedMs) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    addLog("error", `not JSON from the server: ${text.slice(0, 200)}`);
    return;
  }
  if (msg.type === "state") onState(msg);
  else if (msg.type === "stats") onStats(msg, receivedMs);
  else if (msg.type === "log") addLog(msg.level ?? "info", msg.message);
  else if (msg.type === "error") {
    viewer.serverErrors.push(msg.message);
    addLog("error", msg.message);
    if (viewer.settings) showSettings(viewer.settings); // nothing changed: undo the controls
  } // Other types are from a later server: ignored (section 6.2).
}

function onState(msg) {
  failures = 0; // a working connection: the next reconnection starts with a short delay
  viewer.producer = msg.producer;
  viewer.settings = msg.settings;
  viewer.paused = msg.paused;
  const paused = msg.paused ? ", paused" : "";
  if (msg.producer === "live") setStatus("open", `connected${paused}`);
  else setStatus("waiting", `connected${paused}; producer ${msg.producer}`);
  // A new producer may have other cameras: tiles of cameras the ring no longer has go
  // (an empty list, while there is no ring, keeps the last images).
  const ids = (msg.cameras ?? []).map((cam) => cam.id);
  for (const id of ids.length ? tiles.keys() : []) if (!ids.includes(id)) removeTile(id);
  for (const cam of msg.cameras ?? []) {
    const t = tile(cam.id);
    t.nominal = `${cam.width}×${cam.height} ${cam.format}`;
    // Sent images keep the camera's aspect ratio: the tile has it before the first image.
    if (cam.width && cam.height) t.canvas.style.aspectRatio = `${cam.width} / ${cam.height}`;
  }
  showSettings(msg.settings);
  for (const [key, value] of Object.entries(msg.settings)) {
    if (!(key in DEFAULTS)) continue;
    const text = Array.isArray(value) ? value.join(",") : String(value);
    if (text === String(DEFAULTS[key])) params.delete(key);
    else params.set(key, text);
  }
  // The address bar follows, so that a reload keeps the settings.
  history.replaceState(null, "", `${location.pathname}${params.size ? "?" : ""}${params}`);
  const pause = $("pause");
  pause.textContent = msg.paused ? "Resume" : "Pause";
  pause.setAttribute("aria-pressed", String(msg.paused));
  renderTiles();
}

function onStats(msg, receivedMs) {
  if (typeof msg.time_ms === "number") addClockSample(msg.time_ms, receivedMs);
  const c = msg.connection ?? {};
  let rate = "";
  const before = lastStats?.connection?.bytes;
  if (typeof before === "number" && msg.time_ms > lastStats.time_ms) {
    const mbps = ((c.bytes - before) * 8) / ((msg.time_ms - lastStats.time_ms) * 1000);
    rate = ` · ${mbps.toFixed(1)} Mbit/s`;
  }
  lastStats = msg;
  const quality = c.quality == null ? "" : ` · quality ${c.quality}`;
  $("summary").textContent =
    `${fmt(c.fps)} fps sent · ${c.sent} sent · ${c.dropped} dropped${quality}${rate}` +
    ` · latency p50 ${ms(c.latency_us?.p50)} p99 ${ms(c.latency_us?.p99)} (server)`;
  for (const cam of msg.cameras ?? []) if (tiles.has(cam.id)) tiles.get(cam.id).server = cam;
  renderTiles();
}

// --- Controls -----------------------------------------------------------------------------
function showSettings(s) {
  select($("quality"), String(s.quality), String(s.quality));
  select($("max-size"), `${s.max_width}x${s.max_height}`,
    `${s.max_width || "any"}×${s.max_height || "any"}`);
  select($("fps"), String(s.fps), String(s.fps));
}

// Selects `value`, adding an option for it when the URL asked for one not in the list.
function select(el, value, label) {
  if (![...el.options].some((o) => o.value === value)) el.add(new Option(label, value));
  el.value = value;
}

// Settings change on the open connection (never by reconnecting); the server answers
// with a `state` that the controls then show. Until then, or while disconnected, `params`
// holds them for the next connection.
function changeSettings(fields) {
  for (const [key, value] of Object.entries(fields)) params.set(key, String(value));
  send({ type: "settings", ...fields });
}

$("quality").addEventListener("change", (e) => {
  const v = e.target.value;
  changeSettings({ quality: v === "auto" ? "auto" : Number(v) });
});
$("max-size").addEventListener("change", (e) => {
  const [max_width, max_height] = e.target.value.split("x").map(Number);
  changeSettings({ max_width, max_height });
});
$("fps").addEventListener("change", (e) => changeSettings({ fps: Number(e.target.value) }));
$("pause").addEventListener("click", () => {
  wantPaused = !viewer.paused;
  send({ type: wantPaused ? "pause" : "resume" });
});
$("controls").addEventListener("submit", (e) => e.preventDefault());

// --- Cameras ------------------------------------------------------------------------------
// A camera's tile; created (its canvas handed to the worker) the first time the camera
// shows up, in a `state` message or, asked by the worker, in a binary message.
function tile(id) {
  let t = tiles.get(id);
  if (t) return t;
  const figure = document.createElement("figure");
  const canvas = document.createElement("canvas");
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `Camera ${id}`);
  const caption = document.createElement("figcaption");
  const title = document.createElement("strong");
  title.textContent = `Camera ${id}`;
  const size = document.createElement("span");
  const local = document.createElement("div"); // what this page measures
  const remote = document.createElement("div"); // what the server's `stats` say
  local.className = remote.className = "stats";
  caption.append(title, size, local, remote);
  figure.append(canvas, caption);
  t = { id, figure, canvas, size, local, remote, nominal: "", server: null, counters: null };
  tiles.set(id, t);
  const grid = $("grid");
  const after = [...tiles.values()].filter((o) => o.id > id).sort((a, b) => a.id - b.id)[0];
  grid.insertBefore(figure, after ? after.figure : null);
  const offscreen = canvas.transferControlToOffscreen();
  worker.postMessage({ type: "canvas", id, canvas: offscreen }, [offscreen]);
  return t;
}

function removeTile(id) {
  tiles.get(id).figure.remove();
  tiles.delete(id);
  worker.postMessage({ type: "forget", id });
}

function renderTiles() {
  const wanted = viewer.settings?.cameras;
  for (const t of tiles.values()) {
    const selected = !Array.isArray(wanted) || wanted.includes(t.id);
    t.figure.classList.toggle("unselected", !selected);
    const c = t.counters, s = t.server;
    t.size.textContent = c?.width ? `${c.width}×${c.height}` : t.nominal;
    if (!selected) {
      t.local.textContent = "not requested (settings: cameras)";
      t.remote.textContent = "";
      continue;
    }
    if (c?.framesReceived) {
      const parts = [`${fmt(c.displayFps)} fps shown`, `latency ${fmt(c.latencyMs)} ms`,
        `frame ${c.lastFrame ?? "–"}`, `${c.framesDrawn} drawn`, `${c.skipped} skipped`];
      if (c.missing) parts.push(`${c.missing} missing`);
      if (c.undecodable) parts.push(`${c.undecodable} undecodable`);
      t.local.textContent = parts.join(" · ");
    } else {
      t.local.textContent = "waiting for frames…";
    }
    t.remote.textContent = s
      ? `server: ${fmt(s.fps)} fps sent · ${s.dropped} dropped · latency p50 ${ms(s.latency_us?.p50)}`
      : "";
  }
}

worker.onmessage = ({ data }) => {
  if (data.type === "camera") {
    tile(data.id);
  } else if (data.type === "counters") {
    // Only cameras with a tile: a report sent before a camera was forgotten still has it.
    viewer.cameras = data.cameras.filter((c) => tiles.has(c.id));
    viewer.camerasAt = data.at;
    for (const c of viewer.cameras) tiles.get(c.id).counters = c;
    const shown = viewer.cameras.filter((c) => c.framesDrawn > 0);
    viewer.displayFps = shown.length ? shown.reduce((a, c) => a + c.displayFps, 0) / shown.length : 0;
    renderTiles();
  } else if (data.type === "invalid") {
    // A message we cannot parse is a bug or a wrong server: close rather than guess.
    viewer.invalidMessages++;
    addLog("error", `invalid binary message: ${data.message}`);
    ws?.close(4000, "invalid binary message");
  }
};
worker.onerror = (e) => {
  console.error(`viewer worker: ${e.message}`);
  addLog("error", `worker: ${e.message}`);
};

// --- Helpers ------------------------------------------------------------------------------
function addLog(level, message) {
  const li = document.createElement("li");
  li.className = level;
  li.textContent = `${new Date().toLocaleTimeString()} ${level}: ${message}`;
  const log = $("log");
  log.append(li);
  while (log.children.length > MAX_LOG_LINES) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

const fmt = (x) => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(1) : "–");
const ms = (us) => (typeof us === "number" ? `${(us / 1000).toFixed(1)} ms` : "–");

connect();

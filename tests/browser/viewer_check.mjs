// Drives the camring browser viewer (consumers/viewer) in real Chromium against a running
// `camring bridge ws`, and prints one JSON line of results for tests/viewer.rs to assert.
//
//   node tests/browser/viewer_check.mjs URL CAMERAS [--restart]
//
// URL: the viewer page (e.g. http://127.0.0.1:PORT/?token=T); CAMERAS: how many cameras the
// ring has. Steps: every camera draws frames; frame numbers advance over ~3 s (the display
// rate is measured there); the max size and the quality are changed through the controls,
// on the same WebSocket, and frames keep coming at the new size; pause stops frames and
// resume restarts them. With --restart, the server is then restarted by whoever runs this
// script: it prints `stop-server` and waits for a `stopped` line on stdin, checks that the
// page shows the lost connection, prints `start-server` and waits for `started`, and checks
// that the page reconnected by itself with the settings chosen before.
//
// Waits end on a condition, with a generous timeout only so that a broken viewer fails
// instead of hanging. Exit status 1 when a step failed (`failure` says which); the JSON line
// is printed either way.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { chromium } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";
// Without the background-networking flags Chromium keeps calling Google's services, which
// floods a closed network with failing requests.
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const WAIT_MS = 30000; // a watchdog for each wait, not a performance requirement
const MEASURE_MS = 3000;
const MIN_NEW_FRAMES = 10; // each camera draws at least this many frames after each step
// The worked example of docs/protocol.md (section 5): 156 bytes, cameras 0 (a 4-byte
// JPEG that is not an image) and 2 (a 4×2 gray8 image).
const WORKED_EXAMPLE =
  "43414d46010000000200000000000000d20400000000000000002a36fe9c971760e34036fe9c971700096736fe9c9717" +
  "0000000006000000800200006801000000000000180000000400000000000000807b0b36fe9c9717ce04000000000000" +
  "020000000300000004000000020000000400000005000000080000000000000040f11334fe9c9717af04000000000000" +
  "ffd8ffd91020304050607080";

const [url, camerasArg, ...flags] = process.argv.slice(2);
if (!url || !camerasArg || flags.some((f) => f !== "--restart")) {
  console.error("usage: node viewer_check.mjs URL CAMERAS [--restart]");
  process.exit(2);
}
const expected = Number(camerasArg);
const restart = flags.includes("--restart");

const result = {
  failure: null, // "step: what went wrong", or null
  step: null,
  cameras: [], // per camera: frames drawn and display rate over the measuring window
  resized: [], // per camera: the size drawn after max size 320×240
  settingsSent: [], // `settings` messages the page sent on its sockets
  sockets: [], // URLs of the WebSockets the page opened (the browser's network layer)
  socketsBeforeRestart: null, // how many, before the server was restarted
  parser: null, // what a fresh worker.js made of the worked example, whole and damaged
  paused: null, // binary messages received while paused (after the pause settled)
  restart: null, // with --restart: what the page showed and did
  consoleErrors: [],
  pageErrors: [],
  viewer: null, // the viewer's counters at the end (or at the failure)
};
// While the server is down, Chromium logs each refused reconnection attempt as a console
// error; those are expected then, and only then.
let serverDown = false;

const userDataDir = mkdtempSync(join(tmpdir(), "camring-chromium-"));
let context, page;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
  });
  page = context.pages()[0] ?? (await context.newPage());
  watch(page);
  await run(page);
} catch (err) {
  result.failure = `${result.step ?? "launch"}: ${err.message.split("\n")[0]}`;
  result.viewer = await page?.evaluate(() => window.camringViewer).catch(() => null);
} finally {
  try {
    await context?.close();
  } finally {
    rmSync(userDataDir, { recursive: true, force: true });
  }
}
console.log(JSON.stringify(result));
process.exit(result.failure ? 1 : 0);

function watch(page) {
  const onConsole = (where) => (msg) => {
    if (msg.type() !== "error") return;
    const text = `${where}: ${msg.text()}`;
    if (serverDown && /WebSocket connection to .* failed/.test(text)) result.restart.refused++;
    else result.consoleErrors.push(text);
  };
  page.on("console", onConsole("page"));
  page.on("pageerror", (err) => result.pageErrors.push(err.message));
  page.on("worker", (worker) => worker.on("console", onConsole("worker")));
  page.on("websocket", (socket) => {
    result.sockets.push(socket.url());
    socket.on("framesent", ({ payload }) => {
      if (typeof payload === "string" && payload.includes('"settings"')) result.settingsSent.push(payload);
    });
  });
}

async function run(page) {
  const viewer = () => page.evaluate(() => window.camringViewer);
  // Waits until `predicate(arg)`, run in the page, holds.
  const until = (predicate, arg) => page.waitForFunction(predicate, arg, { timeout: WAIT_MS, polling: 100 });
  // Waits until every camera of `before` drew MIN_NEW_FRAMES more, the last one at most
  // maxWidth × maxHeight.
  const moreFrames = (before, maxWidth = Infinity, maxHeight = Infinity) =>
    until(
      ({ before, min, maxWidth, maxHeight }) =>
        before.every((b) => {
          const c = window.camringViewer.cameras.find((x) => x.id === b.id);
          return c && c.framesDrawn >= b.framesDrawn + min && c.width > 0 && c.height > 0 &&
            c.width <= maxWidth && c.height <= maxHeight;
        }),
      { before: before.cameras, min: MIN_NEW_FRAMES, maxWidth, maxHeight },
    );
  const sizes = async () => (await viewer()).cameras.map(({ id, width, height }) => ({ id, width, height }));

  result.step = "load the page";
  await page.goto(url, { waitUntil: "load" });

  result.step = "the worker parses the protocol's worked example";
  result.parser = await page.evaluate(parseInWorker, WORKED_EXAMPLE);

  result.step = `every one of ${expected} cameras draws frames`;
  await until(({ n, min }) => {
    const cameras = window.camringViewer?.cameras ?? [];
    return cameras.length === n && cameras.every((c) => c.framesDrawn >= min);
  }, { n: expected, min: MIN_NEW_FRAMES });

  result.step = "frame numbers advance";
  const start = await viewer();
  await page.waitForTimeout(MEASURE_MS); // the measuring window, not an assertion
  await until(
    (before) => before.every((b) => window.camringViewer.cameras.find((c) => c.id === b.id).lastFrame > b.lastFrame),
    start.cameras,
  );
  const end = await viewer();
  const seconds = (end.camerasAt - start.camerasAt) / 1000; // when the worker counted
  result.cameras = end.cameras.map((c) => {
    const b = start.cameras.find((x) => x.id === c.id);
    return {
      id: c.id,
      framesDrawn: c.framesDrawn,
      drawnInWindow: c.framesDrawn - b.framesDrawn,
      measuredFps: (c.framesDrawn - b.framesDrawn) / seconds,
      displayFps: c.displayFps, // the page's own figure
      firstFrame: b.lastFrame,
      lastFrame: c.lastFrame,
      skipped: c.skipped,
      latencyMs: c.latencyMs,
      width: c.width,
      height: c.height,
    };
  });

  result.step = "max size 320×240 through the controls";
  let before = await viewer();
  await page.getByLabel("Max size").selectOption("320x240");
  await until(() => window.camringViewer.settings?.max_width === 320 && window.camringViewer.settings?.max_height === 240);
  await moreFrames(before, 320, 240);
  // Then frames keep coming at the new size.
  before = await viewer();
  await moreFrames(before, 320, 240);
  result.resized = await sizes();

  result.step = "quality 40 through the controls";
  before = await viewer();
  await page.getByLabel("Quality").selectOption("40");
  await until(() => window.camringViewer.settings?.quality === 40);
  await moreFrames(before);

  result.step = "pause";
  await page.getByRole("button", { name: "Pause" }).click();
  await until(() => window.camringViewer.paused === true);
  await page.getByRole("button", { name: "Resume", pressed: true }).waitFor({ timeout: WAIT_MS });
  // Up to two multi-frames may already be on their way when the server pauses
  // (docs/protocol.md, section 7); after half a second none may still arrive.
  await page.waitForTimeout(500);
  const pausedAt = (await viewer()).binaryMessages;
  await page.waitForTimeout(1500);
  result.paused = (await viewer()).binaryMessages - pausedAt;

  result.step = "resume";
  before = await viewer();
  await page.getByRole("button", { name: "Resume" }).click();
  await until(() => window.camringViewer.paused === false);
  await moreFrames(before);
  result.socketsBeforeRestart = result.sockets.length;

  if (restart) {
    const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
    const ask = async (request, answer) => {
      console.log(request);
      const { value } = await stdin.next();
      if (value !== answer) throw new Error(`expected "${answer}" on stdin, got ${JSON.stringify(value)}`);
    };
    result.restart = { refused: 0, statusWhileDown: null, connections: null, settings: null, sizes: null };
    // The new connection's URL (in `sockets`) carries the settings; the sizes drawn after it
    // show that the server applied them.

    result.step = "the page shows the lost connection";
    serverDown = true;
    await ask("stop-server", "stopped");
    // The text shown between two attempts (what the page shows while an attempt runs is
    // "reconnecting (attempt N)…").
    const shown = await until(() => {
      const text = document.getElementById("status").textContent;
      return !window.camringViewer.connected && text.includes("disconnected") && text;
    });
    result.restart.statusWhileDown = await shown.jsonValue();

    result.step = "the page reconnects by itself, with the settings chosen before";
    before = await viewer();
    await ask("start-server", "started");
    await until((n) => window.camringViewer.connections > n, before.connections);
    serverDown = false;
    await moreFrames(before, 320, 240);
    const after = await viewer();
    result.restart.connections = after.connections;
    result.restart.settings = after.settings;
    result.restart.sizes = await sizes();
  }

  result.step = "done";
  result.viewer = await viewer();
}

// Runs in the page: a fresh worker.js gets the worked example whole, cut short by a byte,
// and with a byte too many; returns what it reported.
async function parseInWorker(hex) {
  const bytes = Uint8Array.from(hex.match(/../g), (h) => parseInt(h, 16));
  const worker = new Worker("worker.js");
  const seen = { cameraRequests: [], invalid: [], cameras: [] };
  const reported = new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error(`no report in 10 s: ${JSON.stringify(seen)}`)), 10000);
    worker.onmessage = ({ data }) => {
      if (data.type === "camera") seen.cameraRequests.push(data.id);
      else if (data.type === "invalid") seen.invalid.push(data.message);
      else if (data.type === "counters") {
        seen.cameras = data.cameras;
        const [c0, c2] = [0, 2].map((id) => data.cameras.find((c) => c.id === id));
        if (c0?.undecodable && c2?.framesReceived && seen.invalid.length >= 2) resolve();
      }
    };
  });
  const canvas = new OffscreenCanvas(1, 1); // camera 0 has a canvas, camera 2 asks for one
  worker.postMessage({ type: "canvas", id: 0, canvas }, [canvas]);
  for (const message of [bytes, bytes.subarray(0, bytes.length - 1), Uint8Array.of(...bytes, 0)]) {
    const buffer = message.slice().buffer;
    worker.postMessage({ type: "frame", buffer, receivedMs: Date.now(), offsetMs: 0 }, [buffer]);
  }
  try {
    await reported;
  } finally {
    worker.terminate();
  }
  return seen;
}

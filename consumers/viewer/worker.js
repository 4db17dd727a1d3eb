// camring viewer worker: parses binary multi-frames (docs/protocol.md, section 3), decodes
// JPEG images with createImageBitmap and draws them on the OffscreenCanvases the page
// transferred, so the page's main thread never touches image data.
//
// Messages from the page:
//   {type: "canvas", id, canvas}            the OffscreenCanvas of camera `id`
//   {type: "forget", id}                    camera `id` is gone (a new producer lacks it)
//   {type: "frame", buffer, receivedMs, offsetMs}
//                                           one binary message (its ArrayBuffer transferred);
//                                           receivedMs: the page's clock when it arrived;
//                                           offsetMs: the estimated server clock − page clock
// Messages to the page:
//   {type: "camera", id}                    a camera without a canvas yet: please send one
//   {type: "counters", at, cameras: [...]}  live counters (at: Date.now()), every REPORT_MS
//   {type: "invalid", message}              a message that is not valid protocol version 1

"use strict";

const REPORT_MS = 250;
const RATE_WINDOW_MS = 1000;
const FORMATS = [null, "rgb8", "bgr8", "gray8", "yuyv", "nv12", "jpeg"];
const CAM_MISSING = 0x02;

/** Per camera id: its canvas, what is being decoded, the newest frame waiting, counters. */
const cameras = new Map();

function camera(id) {
  let cam = cameras.get(id);
  if (!cam) {
    cam = {
      id, canvas: null, ctx: null, askedForCanvas: false, decoding: false, pending: null,
      framesReceived: 0, framesDrawn: 0, skipped: 0, missing: 0, undecodable: 0,
      lastFrame: null, lastSequence: null, width: 0, height: 0,
      latencies: [], latencyMs: null, rateSamples: [], displayFps: 0,
    };
    cameras.set(id, cam);
  }
  return cam;
}

// Parses one binary message like the reference parser (protocol/src/wire.rs), refusing
// what section 3.5 refuses, except rule 6 (raw image sizes): raw images are not shown.
// Payloads are views into `buf`, not copies.
function parseMultiFrame(buf) {
  const v = new DataView(buf);
  const u32 = (o) => v.getUint32(o, true);
  const u64 = (o) => v.getBigUint64(o, true); // BigInt: ns timestamps exceed 2^53
  if (buf.byteLength < 48 || u32(0) !== 0x464d4143) throw new Error("not a camring message");
  if (u32(4) !== 1) throw new Error(`unsupported message version ${u32(4)}`);
  const count = u32(8);
  let at = 48 + 48 * count; // where the first payload starts
  if (count > 16 || at > buf.byteLength) throw new Error(`bad camera count ${count}`);
  const msg = { frame: u64(16), sendNs: u64(40), cameras: [] };
  const ids = new Set();
  for (let e = 48; e < 48 + 48 * count; e += 48) {
    const id = u32(e), format = FORMATS[u32(e + 4)], stride = u32(e + 16);
    const flags = u32(e + 20), length = u32(e + 24);
    const missing = (flags & CAM_MISSING) !== 0;
    if (!format) throw new Error(`camera ${id}: unknown format ${u32(e + 4)}`);
    if (missing !== (length === 0)) throw new Error(`camera ${id}: length ${length} with flags ${flags}`);
    if (format === "jpeg" && !missing && stride !== 0) throw new Error(`camera ${id}: JPEG with a stride`);
    if (ids.has(id)) throw new Error(`camera ${id} twice`);
    if (at + length > buf.byteLength) throw new Error(`camera ${id}: truncated payload`);
    ids.add(id);
    msg.cameras.push({
      id, format, missing, width: u32(e + 8), height: u32(e + 12),
      captureNs: u64(e + 32), sequence: u64(e + 40), payload: new Uint8Array(buf, at, length),
    });
    at += length;
  }
  if (at !== buf.byteLength) throw new Error("payload lengths do not add up to the message");
  return msg;
}

function onFrame({ buffer, receivedMs, offsetMs }) {
  let msg;
  try {
    msg = parseMultiFrame(buffer);
  } catch (err) {
    postMessage({ type: "invalid", message: err.message });
    return;
  }
  for (const entry of msg.cameras) {
    const cam = camera(entry.id);
    if (!cam.canvas && !cam.askedForCanvas) {
      cam.askedForCanvas = true;
      postMessage({ type: "camera", id: cam.id });
    }
    if (entry.missing) { cam.missing++; continue; }
    cam.framesReceived++;
    // Latency in the server's clock: capture time (the producer's clock, on the server's
    // machine) to the page receiving the message. µs precision fits in a Number.
    const captureMs = Number(entry.captureNs / 1000n) / 1000;
    cam.latencies.push(receivedMs + offsetMs - captureMs);
    if (entry.format !== "jpeg") { cam.undecodable++; continue; } // the ws adapter sends JPEG
    const item = { frame: msg.frame, sequence: entry.sequence, payload: entry.payload };
    // Only the newest waits: a frame replaced before it was decoded is skipped.
    if (cam.pending) cam.skipped++;
    cam.pending = item;
    drawNext(cam);
  }
}

async function drawNext(cam) {
  if (cam.decoding || !cam.pending || !cam.ctx) return;
  const item = cam.pending;
  cam.pending = null;
  cam.decoding = true;
  try {
    const image = await createImageBitmap(new Blob([item.payload], { type: "image/jpeg" }));
    if (cam.canvas.width !== image.width || cam.canvas.height !== image.height) {
      cam.canvas.width = image.width;
      cam.canvas.height = image.height;
    }
    cam.ctx.drawImage(image, 0, 0);
    image.close();
    cam.framesDrawn++;
    cam.lastFrame = Number(item.frame);
    cam.lastSequence = Number(item.sequence);
    cam.width = cam.canvas.width;
    cam.height = cam.canvas.height;
  } catch (err) {
    cam.undecodable++; // a corrupt JPEG: counted, shown by the page, never fatal
  } finally {
    cam.decoding = false;
  }
  drawNext(cam);
}

function median(values) {
  if (values.length === 0) return null;
  const sorted = values.slice().sort((a, b) => a - b);
  return sorted[sorted.length >> 1];
}

// Reports the counters, with a display rate over the last RATE_WINDOW_MS and the median
// latency of the frames received since the last report.
setInterval(() => {
  const now = performance.now();
  const out = [];
  for (const cam of cameras.values()) {
    cam.rateSamples.push([now, cam.framesDrawn]);
    while (cam.rateSamples.length > 2 && now - cam.rateSamples[1][0] >= RATE_WINDOW_MS) {
      cam.rateSamples.shift();
    }
    const [t0, n0] = cam.rateSamples[0];
    cam.displayFps = now > t0 ? ((cam.framesDrawn - n0) * 1000) / (now - t0) : 0;
    if (cam.latencies.length) cam.latencyMs = median(cam.latencies);
    cam.latencies.length = 0;
    const { canvas, ctx, askedForCanvas, pending, decoding, latencies, rateSamples, ...counters } = cam;
    out.push(counters);
  }
  out.sort((a, b) => a.id - b.id);
  postMessage({ type: "counters", at: Date.now(), cameras: out });
}, REPORT_MS);

onmessage = ({ data }) => {
  if (data.type === "frame") {
    onFrame(data);
  } else if (data.type === "canvas") {
    const cam = camera(data.id);
    cam.canvas = data.canvas;
    cam.ctx = data.canvas.getContext("2d", { alpha: false });
    drawNext(cam);
  } else if (data.type === "forget") {
    cameras.delete(data.id);
  }
};

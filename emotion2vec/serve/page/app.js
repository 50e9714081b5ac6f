// The page of `emotion2vec serve`: choose, drop or record audio; POST it to `predict` (relative URLs, so that the
// page works under a reverse proxy's prefix); show the top emotion, every probability as a bar and, for audio
// longer than the threshold, a timeline of each emotion's probability over windows.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#3457d5", "#d92d20", "#079455", "#dc6803", "#7a5af8", "#0e9384", "#c11574", "#667085", "#854a0e",
                "#2e90fa"];
let needsKey = false;

function headers() {
  const key = $("apikey").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  $("status").textContent = "";
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.message) return body.message + " (" + response.status + " " + body.error + ")";
  } catch (e) { /* not JSON */ }
  return "the service answered " + response.status + " " + response.statusText;
}

async function getJSON(path) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) throw new Error(await errorMessage(response));
  return response.json();
}

async function describeModel() {
  try {
    const health = await getJSON("health");
    needsKey = health.api_key_required;
    $("key-row").hidden = !needsKey;
    if (needsKey && !$("apikey").value) {
      $("options").open = true;
      $("model-line").textContent = "This service needs an API key (Options).";
      return;
    }
    const model = await getJSON("model");
    const head = model.head ? model.head.labels.join(", ") : "no classification head: features only";
    $("model-line").textContent = model.checkpoint + " · " + model.device + " · " + model.dtype + " · " + head;
  } catch (e) {
    $("model-line").textContent = "The service cannot describe its model: " + e.message;
  }
}

function duration(url) {
  // The length of the audio as the browser reads it (null when it cannot): decides whether to draw a timeline.
  return new Promise((resolve) => {
    const probe = new Audio();
    const done = (value) => { clearTimeout(timer); resolve(value); };
    const timer = setTimeout(() => done(null), 3000);
    probe.preload = "metadata";
    probe.onloadedmetadata = () => done(Number.isFinite(probe.duration) ? probe.duration : null);
    probe.onerror = () => done(null);
    probe.src = url;
  });
}

async function post(file, query) {
  const form = new FormData();
  form.append("file", file, file.name || "recording.wav");
  const response = await fetch("predict" + query, { method: "POST", body: form, headers: headers() });
  if (!response.ok) throw new Error(await errorMessage(response));
  return response.json();
}

function renderBars(row) {
  const bars = $("bars");
  bars.replaceChildren();
  const values = row.scores || row.values || {};
  const entries = Object.entries(values).sort((a, b) => b[1] - a[1]);
  const regression = !row.scores;
  const scale = regression ? Math.max(1, ...entries.map(([, v]) => Math.abs(v))) : 1;
  for (const [name, value] of entries) {
    const line = document.createElement("div");
    line.className = "row" + (name === row.label ? " best" : "");
    line.dataset.label = name;
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = (100 * Math.min(1, Math.abs(value) / scale)).toFixed(1) + "%";
    track.append(fill);
    const text = document.createElement("span");
    text.className = "value";
    text.textContent = regression ? value.toFixed(3) : (100 * value).toFixed(1) + "%";
    line.append(label, track, text);
    bars.append(line);
  }
  $("label").textContent = row.label !== undefined ? row.label : "(regression: predicted values below)";
  $("label-p").textContent = row.scores ? (100 * row.scores[row.label]).toFixed(1) + "%" : "";
}

function svg(tag, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function renderTimeline(rows, window, hop) {
  const box = $("timeline-box");
  const plot = $("timeline");
  plot.replaceChildren();
  $("legend").replaceChildren();
  if (!rows || !rows.length) { box.hidden = true; return; }
  box.hidden = false;
  $("tl-window").textContent = window;
  $("tl-hop").textContent = hop;
  plot.dataset.windows = rows.length;
  const W = 800, H = 240, left = 40, right = 10, top = 10, bottom = 28;
  plot.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const end = rows[rows.length - 1].end;
  const x = (t) => left + (W - left - right) * t / end;
  const key = rows[0].scores ? "scores" : "values";
  const names = Object.keys(rows[0][key]);
  const all = rows.flatMap((r) => Object.values(r[key]));
  const lo = key === "scores" ? 0 : Math.min(0, ...all), hi = key === "scores" ? 1 : Math.max(1, ...all);
  const y = (v) => top + (H - top - bottom) * (1 - (v - lo) / (hi - lo));
  for (let k = 0; k <= 4; k++) {
    const v = lo + (hi - lo) * k / 4;
    plot.append(svg("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), class: "grid" }));
    plot.append(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, v.toFixed(key === "scores" ? 2 : 1)));
  }
  const step = Math.max(1, Math.ceil(end / 10));
  for (let t = 0; t <= end + 1e-9; t += step) {
    plot.append(svg("text", { x: x(t), y: H - 8, "text-anchor": "middle" }, t + " s"));
  }
  plot.append(svg("line", { x1: left, x2: W - right, y1: H - bottom, y2: H - bottom, class: "axis" }));
  names.forEach((name, j) => {
    const color = COLORS[j % COLORS.length];
    const points = rows.map((r) => `${x((r.start + r.end) / 2).toFixed(1)},${y(r[key][name]).toFixed(1)}`);
    const line = svg("polyline", { points: points.join(" "), stroke: color });
    line.append(svg("title", {}, name));
    plot.append(line);
    const entry = document.createElement("span");
    entry.textContent = name;
    entry.style.setProperty("--c", color);
    $("legend").append(entry);
  });
}

async function recognise(file, recorded = false) {
  clearError();
  if (needsKey && !$("apikey").value.trim()) {
    showError("This service needs an API key: enter it under Options.");
    $("options").open = true;
    return;
  }
  const url = URL.createObjectURL(file);
  const seconds = await duration(url);
  const long = seconds !== null && seconds > Number($("long").value);
  const window = Number($("window").value), hop = Number($("hop").value);
  $("status").textContent = "Recognising " + (file.name || "the recording") + "…";
  $("result").setAttribute("aria-busy", "true");
  try {
    const [row, windows] = await Promise.all([
      post(file, ""),
      long ? post(file, `?window=${window}&hop=${hop}`) : Promise.resolve(null),
    ]);
    const player = $("player");
    if (player.src) URL.revokeObjectURL(player.src);
    player.src = url;
    const line = $("file-line");
    line.textContent = (file.name || "recording") + (seconds !== null ? ` · ${seconds.toFixed(1)} s` : "");
    if (recorded) {  // the recording exists only here: offer to keep it
      const save = document.createElement("a");
      save.id = "save-recording";
      save.href = url;
      save.download = file.name;
      save.textContent = "save the recording";
      line.append(" · ", save);
    }
    renderBars(row);
    renderTimeline(windows, window, hop);
    $("result").hidden = false;
    $("status").textContent = "";
  } catch (e) {
    URL.revokeObjectURL(url);
    $("result").hidden = true;  // the result shown was another file's
    showError(e.message === "Failed to fetch" ? "The service cannot be reached." : e.message);
  } finally {
    const result = $("result");
    result.setAttribute("aria-busy", "false");
    result.dataset.answered = String(Number(result.dataset.answered || 0) + 1);  // uploads answered so far
  }
}

// ---------------------------------------------------------------------------------------------------- recording
let recorder = null;

function wavFile(buffer) {
  // An AudioBuffer -> a mono 16-bit PCM WAV file at its own rate.
  const channels = buffer.numberOfChannels, n = buffer.length, rate = buffer.sampleRate;
  const mono = new Float32Array(n);
  for (let c = 0; c < channels; c++) {
    const data = buffer.getChannelData(c);
    for (let i = 0; i < n; i++) mono[i] += data[i] / channels;
  }
  const out = new DataView(new ArrayBuffer(44 + 2 * n));
  const text = (pos, s) => { for (let i = 0; i < s.length; i++) out.setUint8(pos + i, s.charCodeAt(i)); };
  text(0, "RIFF"); out.setUint32(4, 36 + 2 * n, true); text(8, "WAVE"); text(12, "fmt ");
  out.setUint32(16, 16, true); out.setUint16(20, 1, true); out.setUint16(22, 1, true);
  out.setUint32(24, rate, true); out.setUint32(28, 2 * rate, true); out.setUint16(32, 2, true);
  out.setUint16(34, 16, true); text(36, "data"); out.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) out.setInt16(44 + 2 * i, Math.round(32767 * Math.max(-1, Math.min(1, mono[i]))), true);
  return new File([out.buffer], "recording.wav", { type: "audio/wav" });
}

async function toggleRecording() {
  const button = $("record");
  if (recorder) { recorder.stop(); return; }
  clearError();
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    showError("Recording needs a browser with MediaRecorder, on https or localhost.");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    showError("The microphone is not available: " + e.message);
    return;
  }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (event) => chunks.push(event.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    recorder = null;
    button.textContent = "● Record";
    button.classList.remove("recording");
    $("rec-status").textContent = "";
    try {
      const context = new AudioContext();
      const audio = await context.decodeAudioData(await new Blob(chunks).arrayBuffer());
      context.close();
      await recognise(wavFile(audio), true);
    } catch (e) {
      showError("The recording could not be decoded: " + e.message);
    }
  };
  recorder.start();
  button.textContent = "■ Stop";
  button.classList.add("recording");
  $("rec-status").textContent = "recording… press Stop when done";
}

// ---------------------------------------------------------------------------------------------------- wiring
function init() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) recognise(file);
    event.target.value = "";
  });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) recognise(file);
  });
  $("record").addEventListener("click", toggleRecording);
  $("apikey").addEventListener("change", describeModel);
  $("key-row").addEventListener("submit", (event) => { event.preventDefault(); describeModel(); });
  describeModel();
}

document.addEventListener("DOMContentLoaded", init);

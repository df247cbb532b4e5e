// Kiln's playground: try a model through the server's public routes and watch its live
// figures. Plain JavaScript, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "kiln-api-key";
const HISTORY_POINTS = 60;

let models = [];            // the stats feed's models: {model, task, ...}
let previous = null;        // the previous feed, for rates: {at, byName}
const history = new Map();  // model name -> [{rps, p99}], oldest first
let lastImage = null;       // the image last chosen, to rerun with another beam size
let streaming = null;       // the AbortController of a running continuation
let nextWordTimer = 0;

// --- talking to the server ---------------------------------------------------------------

function withKey(headers = {}) {
  const key = localStorage.getItem(KEY);
  return key ? { ...headers, Authorization: `Bearer ${key}` } : headers;
}

async function call(path, options = {}) {
  const response = await fetch(path, { ...options, headers: withKey(options.headers) });
  if (!response.ok) {
    let message = `the server answered ${response.status}`;
    try {
      const body = await response.json();
      message = typeof body.error === "string" ? body.error : body.error.message;
    } catch (_) { /* not JSON: keep the status */ }
    if (response.status === 401) {
      $("key-box").open = true;
      message += " — enter an API key above";
    }
    throw new Error(message);
  }
  return response;
}

async function postJson(path, body, signal) {
  return call(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
}

function showError(error) {
  $("error").textContent = error ? error.message || String(error) : "";
}

// Yields the `data:` payloads of a Server-Sent Events response as they arrive.
async function* eventData(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (line.startsWith("data: ")) yield line.slice(6);
      }
    }
  }
}

// --- choosing a model --------------------------------------------------------------------

const TASKS = { classify: "Image classifiers", caption: "Captioners", "language-model": "Language models" };

function chosenModel() {
  return models.find((m) => m.model === $("model").value);
}

function fillModels(feedModels) {
  const names = feedModels.map((m) => m.model).join(",");
  models = feedModels;
  const select = $("model");
  if (select.dataset.names === names) return;
  select.dataset.names = names;
  const keep = select.value;
  select.replaceChildren();
  for (const [task, title] of Object.entries(TASKS)) {
    const group = document.createElement("optgroup");
    group.label = title;
    for (const m of feedModels.filter((m) => m.task === task)) {
      group.append(new Option(m.model, m.model));
    }
    if (group.children.length) select.append(group);
  }
  if (feedModels.some((m) => m.model === keep)) select.value = keep;
  showModel();
}

function showModel() {
  const model = chosenModel();
  showError(null);
  $("labels").replaceChildren();
  $("caption").textContent = "";
  $("continuation").replaceChildren();
  if (!model) return;
  const image = model.task !== "language-model";
  $("image-panel").hidden = !image;
  $("text-panel").hidden = image;
  $("caption-options").hidden = model.task !== "caption";
  $("model-info").textContent = `${TASKS[model.task].replace(/s$/, "").toLowerCase()}, version ${model.version}, on ${model.backend}`;
  if (image && lastImage) runImage(lastImage);
  if (!image) scheduleNextWords(0);
  for (const row of document.querySelectorAll("#stats-table tbody tr")) {
    row.classList.toggle("chosen", row.dataset.model === model.model);
  }
  drawChart();
}

// --- images: classify or caption ---------------------------------------------------------

function bars(list, rows) {
  list.replaceChildren(...rows.map(([label, probability]) => {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label;
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${(probability * 100).toFixed(1)}%`;
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(probability * 100).toFixed(1)} %`;
    item.append(name, bar, value);
    return item;
  }));
}

async function runImage(file) {
  const model = chosenModel();
  if (!model || model.task === "language-model") return;
  lastImage = file;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  showError(null);
  const send = { method: "POST", headers: { "Content-Type": file.type || "application/octet-stream" }, body: file };
  const name = encodeURIComponent(model.model);
  try {
    if (model.task === "classify") {
      const answer = await (await call(`/v1/models/${name}/classify?top_k=5`, send)).json();
      bars($("labels"), answer.predictions.map((p) => [p.label, p.probability]));
    } else {
      $("caption").textContent = "…";
      const beam = $("beam").value;
      const answer = await (await call(`/v1/models/${name}/caption?beam_size=${beam}`, send)).json();
      $("caption").textContent = answer.caption;
    }
  } catch (error) {
    $("caption").textContent = "";
    showError(error);
  }
}

// --- text: next words and a streamed continuation ---------------------------------------

function scheduleNextWords(delay = 250) {
  clearTimeout(nextWordTimer);
  nextWordTimer = setTimeout(nextWords, delay);
}

async function nextWords() {
  const model = chosenModel();
  if (!model || model.task !== "language-model") return;
  try {
    const answer = await (await postJson(`/v1/models/${encodeURIComponent(model.model)}/next-word`,
      { text: $("prompt").value, top_k: 5 })).json();
    bars($("next-words"), answer.predictions.map((p) => [p.word, p.probability]));
    showError(null);
  } catch (error) {
    showError(error);
  }
}

async function continueText() {
  const model = chosenModel();
  if (!model || streaming) return;
  const output = $("continuation");
  const prompt = document.createElement("span");
  prompt.className = "prompt";
  prompt.textContent = $("prompt").value;
  const words = document.createElement("span");
  words.className = "words";
  output.replaceChildren(prompt, words);
  streaming = new AbortController();
  $("continue").disabled = true;
  $("stop").disabled = false;
  showError(null);
  try {
    const response = await postJson("/v1/completions", {
      model: model.model,
      prompt: $("prompt").value,
      max_tokens: Number($("max-tokens").value) || 20,
      temperature: Number($("temperature").value),
      stream: true,
    }, streaming.signal);
    for await (const data of eventData(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      for (const choice of chunk.choices) words.textContent += choice.text;
      words.dataset.chunks = String(Number(words.dataset.chunks || 0) + 1);
    }
  } catch (error) {
    if (error.name !== "AbortError") showError(error);
  } finally {
    streaming = null;
    $("continue").disabled = false;
    $("stop").disabled = true;
  }
}

// --- the live panel ----------------------------------------------------------------------

function cell(row, name, text) {
  let td = row.querySelector(`td.${name}`);
  if (!td) {
    td = document.createElement("td");
    td.className = name;
    row.append(td);
  }
  td.textContent = text;
}

const fixed = (value, digits = 1) => (value === null || value === undefined || Number.isNaN(value) ? "–" : value.toFixed(digits));

function showStats(feed) {
  const at = performance.now();
  const body = $("stats-table").tBodies[0];
  const seen = new Set();
  for (const m of feed.models) {
    seen.add(m.model);
    const before = previous && previous.byName.get(m.model);
    const seconds = before ? (at - previous.at) / 1000 : 0;
    const rps = seconds > 0 ? (m.requests - before.requests) / seconds : 0;
    const executions = before ? m.executions - before.executions : m.executions;
    const inferences = before ? m.inferences - before.inferences : m.inferences;
    const batch = executions > 0 ? inferences / executions : null;
    let row = body.querySelector(`tr[data-model="${CSS.escape(m.model)}"]`);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.model = m.model;
      body.append(row);
    }
    row.classList.toggle("chosen", m.model === $("model").value);
    cell(row, "name", m.model);
    cell(row, "rps", fixed(rps));
    cell(row, "p50", fixed(m.latency_p50_ms));
    cell(row, "p99", fixed(m.latency_p99_ms));
    cell(row, "batch", fixed(batch));
    cell(row, "items", fixed(m.items_per_second));
    cell(row, "efficiency", feed.energy === "none" ? "–" : fixed(m.items_per_joule, 2));
    const points = history.get(m.model) || [];
    points.push({ rps, p99: m.latency_p99_ms });
    if (points.length > HISTORY_POINTS) points.shift();
    history.set(m.model, points);
  }
  for (const row of [...body.rows]) if (!seen.has(row.dataset.model)) row.remove();
  previous = { at, byName: new Map(feed.models.map((m) => [m.model, m])) };
  $("energy-note").textContent = {
    measured: "img/s/W is measured (RAPL or NVML power), shared between models by compute time.",
    estimated: "img/s/W is estimated: CPU time × the configured watts per core, shared between models by compute time.",
    none: "img/s/W appears once the server has a power reading.",
  }[feed.energy];
  drawChart();
}

function drawChart() {
  const canvas = $("chart");
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  const points = history.get($("model").value) || [];
  const pad = 36;
  context.strokeStyle = "#d0d4d9";
  context.strokeRect(pad, 8, width - 2 * pad, height - pad);
  context.font = "12px system-ui, sans-serif";
  context.fillStyle = "#5f6368";
  const maxRps = Math.max(1, ...points.map((p) => p.rps));
  const maxP99 = Math.max(1, ...points.map((p) => p.p99 || 0));
  context.fillText(`${maxRps.toFixed(0)} req/s`, 2, 18);
  context.fillText(`${maxP99.toFixed(0)} ms`, width - pad + 2, 18);
  context.fillText("last minute", width / 2 - 30, height - 8);
  const x = (i) => pad + (i / (HISTORY_POINTS - 1)) * (width - 2 * pad);
  const line = (value, max, color, dash) => {
    context.beginPath();
    context.setLineDash(dash);
    context.strokeStyle = color;
    context.lineWidth = 2;
    let started = false;
    points.forEach((p, i) => {
      const v = value(p);
      if (v === null || v === undefined) return;
      const y = 8 + (height - pad) * (1 - v / max);
      const px = x(HISTORY_POINTS - points.length + i);
      if (started) context.lineTo(px, y);
      else context.moveTo(px, y);
      started = true;
    });
    context.stroke();
    context.setLineDash([]);
  };
  line((p) => p.rps, maxRps, "#b4441f", []);
  line((p) => p.p99, maxP99, "#1a73e8", [6, 4]);
}

async function poll() {
  try {
    const feed = await (await call("/v1/playground/stats")).json();
    fillModels(feed.models);
    showStats(feed);
  } catch (error) {
    $("energy-note").textContent = `The live figures are unavailable: ${error.message}`;
  }
  setTimeout(poll, 1000);
}

// --- wiring ------------------------------------------------------------------------------

function start() {
  $("api-key").value = localStorage.getItem(KEY) || "";
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(KEY, $("api-key").value.trim());
    showError(null);
    showModel();
  });
  $("model").addEventListener("change", showModel);
  $("image").addEventListener("change", () => {
    const [file] = $("image").files;
    if (file) runImage(file);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const [file] = event.dataTransfer.files;
    if (file) runImage(file);
  });
  $("beam").addEventListener("change", () => lastImage && runImage(lastImage));
  $("prompt").addEventListener("input", () => scheduleNextWords());
  $("continue").addEventListener("click", continueText);
  $("stop").addEventListener("click", () => streaming && streaming.abort());
  poll();
}

start();

// postergen studio: one page over the JSON API in postergen/web/app.py. No framework, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { runs: [], health: null, posters: [], meta: null, viewing: -1, frames: [], playing: null, poll: null };

async function api(path, body) {
  const options = body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function toast(message) {
  const box = $("toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

function status(text) { $("status").textContent = text; }

function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
}

// ---- runs, checkpoints, genres ---------------------------------------------------------------

function currentRun() { return state.runs.find((r) => r.id === $("run").value) || null; }

function fillRuns() {
  const select = $("run");
  const keep = select.value;
  select.replaceChildren(...state.runs.map((r) => el("option", { value: r.id, textContent: r.id })));
  if (state.runs.some((r) => r.id === keep)) select.value = keep;
}

function selectedGenres() {
  return [...$("genres").querySelectorAll(".chip[aria-pressed=true]")].map((b) => b.dataset.genre);
}

function fillRun() {
  const run = currentRun();
  const checkpoint = $("checkpoint");
  const keep = checkpoint.value;
  checkpoint.replaceChildren(...(run ? run.checkpoints : []).map((c) => el("option", { value: c, textContent: c })));
  if (run && run.checkpoints.includes(keep)) checkpoint.value = keep;
  if (!run) { $("run-meta").textContent = "No runs found."; return; }
  const chosen = new Set(selectedGenres());
  $("genres").replaceChildren(...run.genres.map((g) => el("button", {
    type: "button", className: "chip", textContent: g,
    onclick: (e) => { const b = e.currentTarget; b.setAttribute("aria-pressed", b.getAttribute("aria-pressed") !== "true"); genreHint(); },
  })));
  for (const chip of $("genres").children) {
    chip.dataset.genre = chip.textContent;
    chip.setAttribute("aria-pressed", chosen.has(chip.textContent));
  }
  genreHint();
  const size = run.width ? `${run.width}×${run.height}` : "size unknown";
  const step = run.step == null ? "" : ` · step ${stepOf(run)}`;
  $("run-meta").textContent = run.error || `${size}${step}${run.checkpoints.length ? "" : " · no checkpoint yet"}`;
  $("report-link").hidden = !run.report;
  if (run.report) $("report-link").href = run.report;
  $("live").hidden = !run.active;
  document.documentElement.style.setProperty("--card", `${Math.max(130, Math.min(220, (run.width || 64) * 2.4))}px`);
}

function stepOf(run) {  // a resumed run may go past the steps its config.json first planned
  return run.steps && run.step <= run.steps ? `${run.step} of ${run.steps}` : `${run.step}`;
}

function genreHint() {
  const chosen = selectedGenres();
  const run = currentRun();
  $("genre-hint").textContent = !run || !run.genres.length ? "This model was trained without genres."
    : chosen.length ? `Posters for ${chosen.join(" + ")}.` : "None selected: any genre.";
}

async function loadRuns() {
  state.runs = await api("/api/runs");
  fillRuns();
  fillRun();
}

// ---- posters ---------------------------------------------------------------------------------

function request() {  // what every poster request shares
  const run = currentRun();
  const truncation = $("use-truncation").checked ? Number($("truncation").value) : null;
  return { run: run ? run.id : null, checkpoint: $("checkpoint").value || "latest.pt",
           genres: selectedGenres(), truncation };
}

async function generate(event) {
  event && event.preventDefault();
  const body = request();
  body.n = Number($("count").value);
  if ($("random-seed").checked) body.seed = null;
  else body.seed = Math.min(limits().seed, Math.max(0, Math.floor(Number($("seed").value) || 0)));
  body.upscale = $("upscale").checked;
  const button = $("generate");
  button.disabled = true;
  button.classList.add("busy");
  $("grid").classList.add("loading");
  status("Generating…");
  const started = performance.now();
  try {
    const data = await api("/api/generate", body);
    state.posters = data.images;
    state.meta = data;
    if ($("random-seed").checked) $("seed").value = data.images[0].seed;
    renderGrid();
    const ms = Math.round(performance.now() - started);
    status(`${data.images.length} posters · ${data.genres} · step ${data.step ?? "?"} · ${data.width}×${data.height} · ${ms} ms`);
    selectTab("posters");
  } catch (error) {
    toast(error.message);
    status("");
  } finally {
    button.disabled = false;
    button.classList.remove("busy");
    $("grid").classList.remove("loading");
  }
}

function renderGrid() {
  $("empty").hidden = state.posters.length > 0;
  $("grid").replaceChildren(...state.posters.map((poster, i) => el("button", {
    type: "button", className: "poster", title: `Seed ${poster.seed} — open`,
    onclick: () => openViewer(i),
  }, [
    el("img", { src: poster.url, alt: `poster, seed ${poster.seed}, ${poster.genres}` }),
    el("span", { className: "caption" }, [
      el("span", { className: "seed", textContent: `#${poster.seed}` }),
      el("span", { className: "tag", textContent: poster.genres }),
    ]),
  ])));
}

function fileName(poster) {
  const safe = (s) => String(s).replace(/[^\w.-]+/g, "-");
  return `postergen-${safe(state.meta.run)}-${safe(poster.genres)}-seed${poster.seed}.png`;
}

function openViewer(i) {
  const poster = state.posters[i];
  if (!poster) return;
  state.viewing = i;
  $("viewer-img").src = poster.url;
  $("viewer-title").textContent = `Seed ${poster.seed}`;
  const rows = [["genres", poster.genres], ["run", state.meta.run], ["checkpoint", state.meta.checkpoint],
                ["step", state.meta.step ?? "?"], ["size", `${state.meta.width}×${state.meta.height}`],
                ["truncation", state.meta.truncation ?? "off"]];
  $("viewer-meta").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { textContent: k }), el("dd", { textContent: v })]));
  $("download").href = poster.url;
  $("download").download = fileName(poster);
  if (!$("viewer").open) $("viewer").showModal();
}

// ---- interpolation ---------------------------------------------------------------------------

async function interpolate(event) {
  event && event.preventDefault();
  const body = request();
  body.seeds = [Number($("seed-a").value) || 0, Number($("seed-b").value) || 0];
  body.frames = Math.min(limits().frames, Math.max(2, Number($("frames").value) || 16));
  $("interp-go").disabled = true;
  status("Walking the latent space…");
  try {
    const data = await api("/api/interpolate", body);
    state.frames = data.frames;
    $("interp-stage").hidden = false;
    $("interp-slider").max = data.frames.length - 1;
    $("end-a").textContent = `seed ${data.seeds[0]}`;
    $("end-b").textContent = `seed ${data.seeds[1]}`;
    $("strip").replaceChildren(...data.frames.map((f, i) => el("img", { src: f.url, alt: `frame ${i}`, onclick: () => showFrame(i) })));
    showFrame(0);
    status(`${data.frames.length} frames · ${data.genres} · seed ${data.seeds[0]} → ${data.seeds[1]}`);
  } catch (error) {
    toast(error.message);
    status("");
  } finally {
    $("interp-go").disabled = false;
  }
}

function showFrame(i) {
  const frame = state.frames[i];
  if (!frame) return;
  $("interp-slider").value = i;
  $("frame").src = frame.url;
  $("frame-caption").textContent = `t = ${frame.t.toFixed(2)}`;
  [...$("strip").children].forEach((img, j) => img.classList.toggle("current", j === i));
}

function togglePlay() {
  if (state.playing) { clearInterval(state.playing); state.playing = null; $("play").textContent = "play"; return; }
  let i = Number($("interp-slider").value), step = 1;
  state.playing = setInterval(() => {
    if (i + step < 0 || i + step >= state.frames.length) step = -step;  // there and back
    i += step;
    showFrame(i);
  }, 90);
  $("play").textContent = "pause";
}

// ---- training progress -----------------------------------------------------------------------

async function refreshProgress() {
  const run = currentRun();
  if (!run) return;
  try {
    const p = await api(`/api/runs/${encodeURIComponent(run.id)}/progress`);
    $("progress-title").textContent = `Training · ${p.run}`;
    $("progress-text").textContent = (p.step == null ? "No steps logged yet" : `Step ${stepOf(p)}`) +
      (p.active ? " · training now, refreshing" : " · not training") + ` · ${p.checkpoints.length} checkpoint file(s)`;
    $("progress-bar").style.width = p.step && p.steps ? `${Math.min(100, (100 * p.step) / p.steps)}%` : "0";
    setImage("loss", p.loss && p.loss.url);
    setImage("samples", p.samples && p.samples.url);
    $("samples-caption").textContent = p.samples ? `Fixed-noise samples at step ${p.samples.step}` : "Latest samples";
    $("live").hidden = !p.active;
    if (p.report) { $("report-link").href = p.report; $("report-link").hidden = false; }
    if (p.active !== run.active || p.checkpoints.length !== run.checkpoints.length) {
      Object.assign(run, { active: p.active, checkpoints: p.checkpoints, step: p.step });
      fillRun();
    }
    schedulePoll(p.active ? 3000 : 15000);
  } catch (error) {
    schedulePoll(15000);
  }
}

function setImage(name, url) {
  const img = $(`${name}-img`);
  $(`${name}-none`).hidden = !!url;
  img.hidden = !url;
  if (url && img.getAttribute("src") !== url) img.src = url;  // the URL carries the file's mtime
}

function schedulePoll(ms) {
  clearTimeout(state.poll);
  if (!$("panel-training").hidden || (currentRun() && currentRun().active)) state.poll = setTimeout(refreshProgress, ms);
}

// ---- tabs and wiring -------------------------------------------------------------------------

function selectTab(name) {
  for (const tab of document.querySelectorAll("[role=tab]")) tab.setAttribute("aria-selected", tab.dataset.tab === name);
  for (const panel of ["posters", "interpolate", "training"]) $(`panel-${panel}`).hidden = panel !== name;
  if (name === "training") refreshProgress();
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
}

function wire() {
  $("controls").addEventListener("submit", generate);
  $("interp-form").addEventListener("submit", interpolate);
  $("run").addEventListener("change", () => { fillRun(); refreshProgress(); });
  $("clear-genres").addEventListener("click", () => {
    for (const chip of $("genres").children) chip.setAttribute("aria-pressed", "false");
    genreHint();
  });
  $("count").addEventListener("input", () => { $("count-out").textContent = $("count").value; });
  $("truncation").addEventListener("input", () => { $("truncation-out").textContent = Number($("truncation").value).toFixed(2); });
  $("use-truncation").addEventListener("change", () => { $("truncation").disabled = !$("use-truncation").checked; });
  $("dice").addEventListener("click", () => { $("seed").value = Math.floor(Math.random() * (limits().seed - limits().posters)); });
  $("random-seed").addEventListener("change", () => { $("seed").disabled = $("random-seed").checked; });
  for (const tab of document.querySelectorAll("[role=tab]")) tab.addEventListener("click", () => selectTab(tab.dataset.tab));
  $("progress-link").addEventListener("click", (e) => { e.preventDefault(); selectTab("training"); });
  $("interp-slider").addEventListener("input", () => showFrame(Number($("interp-slider").value)));
  $("play").addEventListener("click", togglePlay);
  $("close").addEventListener("click", () => $("viewer").close());
  $("prev").addEventListener("click", () => openViewer(state.viewing - 1));
  $("next").addEventListener("click", () => openViewer(state.viewing + 1));
  $("viewer").addEventListener("click", (e) => { if (e.target === $("viewer")) $("viewer").close(); });
  $("as-a").addEventListener("click", () => useForWalk("seed-a"));
  $("as-b").addEventListener("click", () => useForWalk("seed-b"));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) generate(e);
    if ($("viewer").open && e.key === "ArrowLeft") openViewer(state.viewing - 1);
    if ($("viewer").open && e.key === "ArrowRight") openViewer(state.viewing + 1);
  });
}

function useForWalk(field) {
  $(field).value = state.posters[state.viewing].seed;
  $("viewer").close();
  selectTab("interpolate");
}

// Bounds of the inputs come from the server (GET /api/health "limits"), the one place they are set.
const limits = () => state.health.limits;

function applyLimits() {
  const l = limits();
  $("count").max = l.posters;
  $("frames").max = l.frames;
  for (const id of ["seed", "seed-a", "seed-b"]) $(id).max = l.seed;
  $("truncation").max = Math.min(Number($("truncation").max), l.truncation);
}

async function start() {
  wire();
  try {
    state.health = await api("/api/health");
    applyLimits();
    $("upscale").disabled = !state.health.upscaler;
    $("upscale-hint").textContent = state.health.upscaler ? "Super-resolve each poster." : "No upscaler available.";
    await loadRuns();
  } catch (error) {
    toast(`Cannot reach the studio: ${error.message}`);
  }
  const tab = location.hash.slice(1);
  selectTab(["posters", "interpolate", "training"].includes(tab) ? tab : "posters");
  schedulePoll(15000);
  document.body.dataset.ready = "true";  // for tests: the run list is in
}

start();

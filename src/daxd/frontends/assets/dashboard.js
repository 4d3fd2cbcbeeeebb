// daxd's live page: polls stats.json on this admin port and draws it. No libraries, no build step.
"use strict";

const POLL_MS = Number(new URLSearchParams(location.search).get("poll") || 2000);
const $ = (id) => document.getElementById(id);

function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(Math.round(n))) + " " + units[i];
}
const fmtPct = (r) => (r === null || r === undefined ? "–" : (r * 100).toFixed(1) + "%");
const fmtNum = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 }));
const fmtAgo = (seconds) => {
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
};

// One line chart on a canvas. lines: [{values: [number|null], color}]; opts: {max, min, unit, ref}.
// Sets data-points on the canvas to the number of points drawn (what a test can read).
function drawChart(canvas, times, lines, opts) {
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width, height = canvas.clientHeight || canvas.height;
  canvas.width = width * dpr; canvas.height = height * dpr;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const left = 52, right = 8, top = 8, bottom = 20;
  const w = width - left - right, h = height - top - bottom;
  let max = opts.max;
  if (max === undefined) {
    max = 0;
    for (const line of lines) for (const v of line.values) if (v !== null && v > max) max = v;
    if (opts.ref !== undefined && opts.ref > max) max = opts.ref;
    max = max > 0 ? max * 1.15 : 1;
  }
  const min = opts.min || 0;
  const styles = getComputedStyle(document.documentElement);
  ctx.strokeStyle = styles.getPropertyValue("--grid"); ctx.fillStyle = styles.getPropertyValue("--dim");
  ctx.font = "11px system-ui, sans-serif"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = top + h - (h * i) / 4;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + w, y); ctx.stroke();
    const value = min + ((max - min) * i) / 4;
    ctx.fillText(opts.format ? opts.format(value) : fmtNum(value), 4, y + 4);
  }
  const t0 = times.length ? times[0] : 0, t1 = times.length ? times[times.length - 1] : 1;
  const span = Math.max(t1 - t0, 1);
  if (times.length) ctx.fillText("-" + fmtAgo(t1 - t0), left, height - 4);
  ctx.fillText("now", left + w - 22, height - 4);
  const x = (t) => left + (w * (t - t0)) / span;
  const y = (v) => top + h - (h * (Math.min(v, max) - min)) / (max - min);
  if (opts.ref !== undefined) {
    ctx.strokeStyle = styles.getPropertyValue("--bad"); ctx.setLineDash([4, 4]);
    ctx.beginPath(); ctx.moveTo(left, y(opts.ref)); ctx.lineTo(left + w, y(opts.ref)); ctx.stroke();
    ctx.setLineDash([]);
  }
  let drawn = 0;
  for (const line of lines) {
    ctx.strokeStyle = styles.getPropertyValue(line.color); ctx.lineWidth = 2; ctx.beginPath();
    let pen = false;
    line.values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      if (pen) ctx.lineTo(x(times[i]), y(v)); else ctx.moveTo(x(times[i]), y(v));
      pen = true; drawn++;
    });
    ctx.stroke();
  }
  canvas.dataset.points = String(drawn);
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}

function fillTable(id, rows, columns, empty) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  if (!rows.length) {
    const tr = body.insertRow();
    cell(tr, empty, "empty");
    tr.cells[0].colSpan = $(id).tHead.rows[0].cells.length;
    return;
  }
  for (const r of rows) {
    const tr = body.insertRow();
    for (const c of columns) {
      const v = c(r);
      if (Array.isArray(v)) cell(tr, v[0], v[1]); else cell(tr, v);
    }
  }
}

function render(s) {
  $("node").textContent = s.node;
  $("meta").textContent = "version " + s.version + " · up " + fmtAgo(s.now - s.started_at) +
    " · sampled every " + s.interval + " s";
  const series = s.series, last = series.length ? series[series.length - 1] : null;
  $("tile-hit").textContent = fmtPct(last ? last.hit_ratio : s.cache.hit_ratio);
  $("tile-rps").textContent = last ? fmtNum(last.rps) : "–";
  $("tile-cache").textContent = fmtBytes(s.cache.bytes) + " / " + fmtBytes(s.cache.capacity);
  $("cache-fill").style.width = Math.min(100, (100 * s.cache.bytes) / s.cache.capacity).toFixed(1) + "%";
  $("tile-evicted").textContent = fmtBytes(s.cache.evicted_bytes);
  const up = s.upstream;
  if (up) {
    const state = up.up === null ? "unknown" : up.up ? "up" : "down";
    $("tile-upstream").textContent = state;
    $("tile-upstream").className = "value " + (up.up === false ? "down" : up.up ? "up" : "");
    let detail = up.endpoint;
    if (up.since) detail += " · " + state + " for " + fmtAgo(s.now - up.since);
    if (up.last_error) detail += " · last error " + fmtAgo(s.now - up.last_error_at) + " ago: " + up.last_error;
    $("upstream-detail").textContent = detail;
  }
  const times = series.map((p) => p.t);
  drawChart($("chart-rps"), times, [{ values: series.map((p) => p.rps), color: "--line1" },
    { values: series.map((p) => p.errors_per_s), color: "--bad" }], {});
  drawChart($("chart-hit"), times, [{ values: series.map((p) => p.hit_ratio), color: "--good" }],
    { max: 1, format: (v) => (v * 100).toFixed(0) + "%" });
  drawChart($("chart-latency"), times, [{ values: series.map((p) => p.p50_ms), color: "--line1" },
    { values: series.map((p) => p.p99_ms), color: "--line2" }], {});
  drawChart($("chart-cache"), times, [{ values: series.map((p) => p.cache_bytes), color: "--line1" },
    { values: series.map((p) => p.evicted_bytes_per_s), color: "--line2" }],
    { ref: s.cache.capacity > 4 * Math.max(1, ...series.map((p) => p.cache_bytes)) ? undefined : s.cache.capacity,
      format: fmtBytes });
  function fmtPolicy(p) {
    if (!p) return "–";
    if (!p.cache) return "not cached" + (p.rule ? " (" + p.rule + ")" : "");
    const ttl = (v) => (v === 0 ? "until evicted" : v + " s");
    return "items " + ttl(p.item_ttl) + ", queries " + (p.query_cache ? ttl(p.query_ttl) : "off") +
      (p.rule ? " (" + p.rule + ")" : "");
  }
  fillTable("ops", Object.entries(s.latency), [
    ([op]) => op, ([, l]) => fmtNum(l.count), ([, l]) => fmtNum(l.p50_ms), ([, l]) => fmtNum(l.p99_ms)],
    "no requests in the last minute");
  fillTable("tables", s.tables, [
    (t) => t.table, (t) => fmtNum(t.hits), (t) => fmtNum(t.misses),
    (t) => fmtPct(t.hits + t.misses ? t.hits / (t.hits + t.misses) : null), (t) => fmtNum(t.entries),
    (t) => t.stream + (t.stream_readers ? ", shard readers: " + t.stream_readers : ""),
    (t) => (t.stream_lag === null || t.stream_lag === undefined ? "–" : t.stream_lag.toFixed(2) + " s"),
    (t) => fmtPolicy(t.policy)],
    "no table read through the cache yet");
  const workers = s.workers || [];  // the supervisor's document of --workers N
  $("workers-box").hidden = !workers.length;
  fillTable("workers", workers, [
    (w) => String(w.worker), (w) => String(w.pid ?? "–"), (w) => [w.status || w.state, w.status === "ok" ? "up" : "down"],
    (w) => fmtNum(w.rps), (w) => fmtPct(w.hit_ratio), (w) => fmtBytes(w.cache_bytes), (w) => fmtNum(w.entries)],
    "no workers");
  $("cluster-box").hidden = !s.cluster.clustered;
  fillTable("nodes", s.cluster.nodes, [
    (n) => n.node, (n) => n.address,
    (n) => [n.health + (n.last_error && n.health === "unhealthy" ? ": " + n.last_error : ""),
      n.health === "unhealthy" ? "down" : "up"],
    (n) => fmtPct(n.hit_ratio), (n) => fmtBytes(n.cache_bytes), (n) => fmtNum(n.entries),
    (n) => fmtNum(n.stream_readers)], "a cluster of one");
  document.body.dataset.updated = String(s.now);
}

async function poll() {
  try {
    const response = await fetch("stats.json", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
    $("conn").textContent = "live"; $("conn").className = "pill live";
  } catch (err) {
    $("conn").textContent = "node not answering: " + err.message; $("conn").className = "pill lost";
  }
  setTimeout(poll, POLL_MS);
}
poll();

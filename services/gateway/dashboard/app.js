// AZR dashboard: polls the public API and draws SVG line charts. No external libraries.
"use strict";

const params = new URLSearchParams(location.search);
const POLL_MS = Math.max(500, Number(params.get("poll") || 3000));
const TYPES = ["deduction", "abduction", "induction"];
const ROLES = ["propose", "solve"];
const COLORS = {
  "deduction/propose": "#1f77b4", "deduction/solve": "#6baed6",
  "abduction/propose": "#d62728", "abduction/solve": "#ff9896",
  "induction/propose": "#2ca02c", "induction/solve": "#98df8a",
  "throughput": "#7b4fa0", "tasks": "#e08a1e",
};
const SVG_NS = "http://www.w3.org/2000/svg";
let runId = params.get("run") ? Number(params.get("run")) : null;

async function getJSON(path) {
  const res = await fetch(path, { headers: { Accept: "application/json" } });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

function el(tag, attrs = {}, text = null) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG_NS, tag.slice(4))
                                      : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function niceRange(values) {
  let lo = Math.min(...values), hi = Math.max(...values);
  if (!isFinite(lo)) return [0, 1];
  if (lo === hi) { lo -= 0.5; hi += 0.5; }
  const pad = (hi - lo) * 0.08;
  return [lo - pad, hi + pad];
}

// series: [{name, points: [[step, value], ...]}]; draws one <polyline> and one <circle> per point.
function lineChart(figure, series) {
  figure.querySelectorAll("svg, .legend, .empty").forEach((n) => n.remove());
  const pts = series.flatMap((s) => s.points);
  if (pts.length === 0) {
    figure.appendChild(el("div", { class: "empty" }, "no data yet"));
    return 0;
  }
  const W = 420, H = 190, L = 42, R = 10, T = 8, B = 24;
  const [x0, x1] = niceRange(pts.map((p) => p[0]));
  const [y0, y1] = niceRange(pts.map((p) => p[1]));
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img",
                              "data-series-count": String(series.length) });
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    svg.appendChild(el("svg:line", { class: "gridline", x1: L, x2: W - R, y1: sy(y), y2: sy(y) }));
    svg.appendChild(el("svg:text", { x: L - 4, y: sy(y) + 3, "text-anchor": "end" },
                       Math.abs(y) >= 100 ? y.toFixed(0) : y.toFixed(2)));
  }
  svg.appendChild(el("svg:line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  svg.appendChild(el("svg:line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
  const steps = [...new Set(pts.map((p) => p[0]))].sort((a, b) => a - b);
  const every = Math.max(1, Math.ceil(steps.length / 10));
  steps.forEach((s, i) => {
    if (i % every === 0) svg.appendChild(el("svg:text", { x: sx(s), y: H - 8, "text-anchor": "middle" }, String(s)));
  });
  let drawn = 0;
  for (const s of series) {
    if (s.points.length === 0) continue;
    const color = COLORS[s.name] || "#444";
    const g = el("svg:g", { "data-series": s.name });
    g.appendChild(el("svg:polyline", { stroke: color,
      points: s.points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ") }));
    for (const [x, y] of s.points) {
      const c = el("svg:circle", { cx: sx(x).toFixed(1), cy: sy(y).toFixed(1), r: 3, fill: color,
                                  class: "point", "data-point": "1", "data-step": String(x),
                                  "data-value": String(y) });
      c.appendChild(el("svg:title", {}, `${s.name} step ${x}: ${y}`));
      g.appendChild(c);
      drawn++;
    }
    svg.appendChild(g);
  }
  figure.appendChild(svg);
  const legend = el("div", { class: "legend" });
  for (const s of series) {
    if (s.points.length === 0) continue;
    const item = el("span");
    item.appendChild(el("i", { style: `background:${COLORS[s.name] || "#444"}` }));
    item.appendChild(document.createTextNode(s.name));
    legend.appendChild(item);
  }
  figure.appendChild(legend);
  return drawn;
}

function groupSeries(groups, metric, roles) {
  const out = [];
  for (const t of TYPES) for (const r of roles) {
    const points = groups
      .filter((g) => g.task_type === t && g.role === r && g[metric] !== null && g[metric] !== undefined)
      .map((g) => [g.step, g[metric]]);
    out.push({ name: `${t}/${r}`, points });
  }
  return out;
}

function stepSeconds(step) {
  const total = Object.values(step.timings || {}).filter((v) => typeof v === "number")
    .reduce((a, b) => a + b, 0);
  if (total > 0) return total;
  if (step.started_at && step.finished_at) {
    return (Date.parse(step.finished_at) - Date.parse(step.started_at)) / 1000;
  }
  return 0;
}

function throughputSeries(metrics) {
  const tokens = {};
  for (const g of metrics.groups) tokens[g.step] = (tokens[g.step] || 0) + (g.tokens || 0);
  const points = [];
  for (const s of metrics.steps) {
    const secs = stepSeconds(s);
    if (secs > 0 && tokens[s.step]) points.push([s.step, +(tokens[s.step] / secs).toFixed(2)]);
  }
  return [{ name: "throughput", points }];
}

function card(label, value) {
  const c = el("div", { class: "card" });
  c.appendChild(el("span", { class: "muted" }, label));
  c.appendChild(el("b", {}, value));
  return c;
}

function fmt(v, digits = 2) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); }

function renderSummary(run, metrics) {
  const box = document.getElementById("summary");
  box.replaceChildren();
  const last = metrics.steps[metrics.steps.length - 1];
  const lastGroups = last ? metrics.groups.filter((g) => g.step === last.step) : [];
  const mean = (key, role) => {
    const v = lastGroups.filter((g) => g.role === role && g[key] !== null).map((g) => g[key]);
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
  };
  box.appendChild(card("steps recorded", String(metrics.steps.length)));
  box.appendChild(card("solve rate (last)", fmt(mean("solve_rate", "solve"))));
  box.appendChild(card("valid proposals (last)", fmt(mean("valid_rate", "propose"))));
  box.appendChild(card("step time (last, s)", last ? fmt(stepSeconds(last), 1) : "–"));
  const sizes = Object.values(metrics.buffers).map((b) => (b.active || 0) + (b.seed || 0) + (b.injected || 0));
  box.appendChild(card("tasks in buffers", String(sizes.reduce((a, b) => a + b, 0))));
}

function renderBuffers(buffers) {
  const body = document.querySelector("#buffers tbody");
  body.replaceChildren();
  for (const t of TYPES) {
    const b = buffers[t] || {};
    const tr = el("tr");
    tr.appendChild(el("td", {}, t));
    for (const s of ["active", "seed", "injected", "quarantined", "evicted"]) tr.appendChild(el("td", {}, String(b[s] || 0)));
    body.appendChild(tr);
  }
}

function renderTasks(tasks) {
  const body = document.querySelector("#tasks tbody");
  body.replaceChildren();
  for (const t of tasks.items) {
    const tr = el("tr", { "data-task-id": String(t.id) });
    const verdict = (t.validation && (t.validation.status || (t.validation.valid ? "valid" : null))) || "–";
    for (const v of [t.id, t.task_type, t.step, t.source, t.status]) tr.appendChild(el("td", {}, String(v)));
    tr.appendChild(el("td", { class: t.validation && t.validation.valid === false ? "verdict-bad" : "verdict-ok" }, verdict));
    tr.appendChild(el("td", {}, t.solve_rate === null ? "–" : `${fmt(t.solve_rate)} (n=${t.n_solves})`));
    const pairs = t.inputs.map((inp, i) => `f(${inp}) -> ${t.outputs[i] ?? "?"}`).join("\n");
    const cell = el("td");
    cell.appendChild(el("pre", {}, `${t.program}\n# ${pairs.replaceAll("\n", "\n# ")}`));
    tr.appendChild(cell);
    body.appendChild(tr);
  }
  if (tasks.items.length === 0) {
    const tr = el("tr"); tr.appendChild(el("td", { colspan: 8, class: "empty" }, "no tasks yet"));
    body.appendChild(tr);
  }
}

async function refreshRuns() {
  const runs = await getJSON("/v1/runs?limit=50");
  const sel = document.getElementById("run-select");
  if (runId === null && runs.items.length) runId = runs.items[0].id;
  sel.replaceChildren(...runs.items.map((r) => {
    const o = el("option", { value: String(r.id) }, `#${r.id} ${r.name} (${r.status})`);
    if (r.id === runId) o.selected = true;
    return o;
  }));
  return runs.items.find((r) => r.id === runId) || null;
}

async function refresh() {
  const err = document.getElementById("error");
  try {
    const run = await refreshRuns();
    const weights = await getJSON("/v1/weights/current");
    const w = weights.current || weights.latest;
    document.getElementById("weights").textContent = w ? `weights v${w.version}${weights.current ? "" : " (not loaded)"}` : "weights: base";
    if (!run) { document.body.dataset.ready = "1"; return; }
    const badge = document.getElementById("run-status");
    badge.textContent = run.status; badge.className = `badge ${run.status}`;
    document.getElementById("run-step").textContent = `step ${run.current_step}`;
    const [metrics, tasks] = await Promise.all([
      getJSON(`/v1/runs/${run.id}/metrics`),
      getJSON(`/v1/tasks?run_id=${run.id}&limit=25`),
    ]);
    let points = 0;
    points += lineChart(document.getElementById("chart-reward"), groupSeries(metrics.groups, "reward_mean", ROLES));
    points += lineChart(document.getElementById("chart-solve"), groupSeries(metrics.groups, "solve_rate", ["solve"]));
    points += lineChart(document.getElementById("chart-valid"), groupSeries(metrics.groups, "valid_rate", ["propose"]));
    points += lineChart(document.getElementById("chart-learn"), groupSeries(metrics.groups, "learnability", ["propose"]));
    points += lineChart(document.getElementById("chart-format"), groupSeries(metrics.groups, "format_error_rate", ROLES));
    points += lineChart(document.getElementById("chart-throughput"), throughputSeries(metrics));
    renderSummary(run, metrics);
    renderBuffers(metrics.buffers);
    renderTasks(tasks);
    document.body.dataset.points = String(points);
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    err.hidden = true;
    document.body.dataset.ready = "1";
  } catch (e) {
    err.textContent = `could not refresh: ${e.message}`;
    err.hidden = false;
  }
}

document.getElementById("run-select").addEventListener("change", (ev) => {
  runId = Number(ev.target.value);
  refresh();
});
refresh();
setInterval(refresh, POLL_MS);

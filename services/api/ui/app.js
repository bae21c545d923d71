// BridgeX dashboard: reads only the public API (the same endpoints and keys as every client).
"use strict";

const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];
const DARK = new Set(["#0072B2", "#009E73", "#D55E00", "#000000", "#CC79A7"]);
const KEY = "bridgex.apiKey";
const $ = (sel, root = document) => root.querySelector(sel);
let cleanup = null; // what the current page stops when another one opens (the jobs page's polling)
let routeToken = 0; // a page renders only if no newer navigation started meanwhile

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function colour(code, order) {
  const i = order.indexOf(code);
  return PALETTE[(i < 0 ? order.length : i) % PALETTE.length];
}
function fmt(x, d = 4) { return x === null || x === undefined ? "–" : Number(x).toFixed(d); }

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// One fetch wrapper: the key from this browser session, the gateway's own error message on failure.
async function api(path, opts = {}) {
  const headers = { "content-type": "application/json", ...(opts.headers || {}) };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.authorization = `Bearer ${key}`;
  const resp = await fetch(path, { ...opts, headers });
  if (resp.status === 204) return null;
  let body = null;
  try { body = await resp.json(); } catch (_) { body = null; }
  if (!resp.ok) {
    const msg = (body && (body.message || (body.detail && JSON.stringify(body.detail)))) || resp.statusText;
    if (resp.status === 401 || resp.status === 403) showKeyForm();
    throw new ApiError(resp.status, `${resp.status}: ${msg}`);
  }
  return body;
}

function showError(err) {
  const box = $("#error");
  box.textContent = err ? String(err.message || err) : "";
  box.hidden = !err;
}
function showKeyForm() { $("#key-form").hidden = false; $("#api-key").focus(); }

// ------------------------------------------------------------------------------------------- matrix
async function matrixPage(main, params) {
  const [langs, configs] = await Promise.all([api("/languages"), api("/bridges/configs")]);
  const config = params.get("config") || "";
  const matrix = await api(`/bridges${config ? `?config=${encodeURIComponent(config)}` : ""}`);
  const codes = langs.languages.map((l) => l.code);
  for (const p of matrix.pairs) for (const c of [p.source, p.target]) if (!codes.includes(c)) codes.push(c);
  const byPair = new Map(matrix.pairs.map((p) => [`${p.source}-${p.target}`, p]));
  const bridges = [...new Set(matrix.pairs.map((p) => p.served || p.best).filter(Boolean))].sort();
  const opts = Object.keys(configs.configs || {}).map((fp) => `<option value="${esc(fp)}" ${fp === config ? "selected" : ""}>${esc(fp)}</option>`).join("");
  let rows = "";
  codes.forEach((s, i) => {
    rows += `<tr><th scope="row">${esc(s)}</th>`;
    codes.forEach((t, j) => {
      if (s === t) { rows += `<td class="self" aria-hidden="true"></td>`; return; }
      const p = byPair.get(`${s}-${t}`);
      const pos = `data-row="${i}" data-col="${j}" data-source="${esc(s)}" data-target="${esc(t)}" tabindex="-1"`;
      if (!p) {
        rows += `<td class="cell unanalysed" ${pos} title="${esc(s)}→${esc(t)}: not analysed (auto translates directly)">·</td>`;
      } else if (!p.served) {
        rows += `<td class="cell none-validated" ${pos} title="${esc(s)}→${esc(t)}: analysed, no bridge served (${esc(p.served_reason || "")}); HSIC best ${esc(p.best)} ${fmt(p.score)}; ${esc(p.published_at || "")}">none</td>`;
      } else {
        const bg = colour(p.served, bridges);
        rows += `<td class="cell cached" ${pos} style="background:${bg};color:${DARK.has(bg) ? "#fff" : "#000"}" title="${esc(s)}→${esc(t)}: bridge ${esc(p.served)} from the cache; HSIC best ${esc(p.best)} ${fmt(p.score)}; ${esc(p.published_at || "")}">${esc(p.served)}</td>`;
      }
    });
    rows += "</tr>";
  });
  const legend = bridges.map((b) => `<span><i class="swatch" style="background:${colour(b, bridges)}"></i>${esc(b)}</span>`).join("")
    + `<span><i class="swatch none-validated"></i>validated: no bridge</span><span class="muted">· not analysed</span>`;
  const list = matrix.pairs.map((p) => `<tr><td>${esc(p.source)}→${esc(p.target)}</td><td>${esc(p.served || "none")}</td><td>${esc(p.best || "–")}</td><td>${fmt(p.score)}</td><td>${esc(p.published_at || "")}</td></tr>`).join("");
  main.innerHTML = `
    <h2>Served bridge per pair <span class="muted">(model ${esc(matrix.model)})</span></h2>
    <form class="row" id="cfg"><label>Method variant<select name="config"><option value="">served per pair</option>${opts}</select></label></form>
    <p class="legend">${legend}</p>
    <table id="matrix" role="grid" aria-label="bridge matrix: rows source, columns target"><thead><tr><th>s \\ t</th>${codes.map((c) => `<th scope="col">${esc(c)}</th>`).join("")}</tr></thead><tbody>${rows}</tbody></table>
    <h3>As a table</h3>
    <table id="pairs"><thead><tr><th>pair</th><th>served</th><th>HSIC best</th><th>score</th><th>published</th></tr></thead><tbody>${list}</tbody></table>`;
  $("#cfg select", main).addEventListener("change", (e) => { location.hash = `#/matrix${e.target.value ? `?config=${e.target.value}` : ""}`; });
  const cells = [...main.querySelectorAll("td.cell")];
  const at = (r, c) => cells.find((x) => +x.dataset.row === r && +x.dataset.col === c);
  if (cells.length) cells[0].tabIndex = 0;
  const open = (td) => { location.hash = `#/pair/${td.dataset.source}/${td.dataset.target}${config ? `?config=${config}` : ""}`; };
  cells.forEach((td) => {
    td.addEventListener("click", () => open(td));
    td.addEventListener("keydown", (e) => {
      const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(td); return; }
      if (!moves[e.key]) return;
      e.preventDefault();
      let [r, c] = [+td.dataset.row, +td.dataset.col];
      for (let k = 0; k < codes.length; k++) {
        r += moves[e.key][0]; c += moves[e.key][1];
        const next = at(r, c);
        if (next) { td.tabIndex = -1; next.tabIndex = 0; next.focus(); return; }
        if (r < 0 || c < 0 || r >= codes.length || c >= codes.length) return;
      }
    });
  });
}

// ------------------------------------------------------------------------------------------- pair
function lineChart(ranked, layers, order) {
  const W = 520, H = 240, L = 48, R = 90, T = 12, B = 30;
  const vals = ranked.flatMap((c) => Object.values(c.per_layer || {})).map(Number).filter(Number.isFinite);
  if (!vals.length || !layers.length) return `<p class="muted">no per-layer scores</p>`;
  let lo = Math.min(...vals), hi = Math.max(...vals);
  if (hi === lo) { hi += 1e-6; lo -= 1e-6; }
  const x = (l) => L + (layers.length === 1 ? 0.5 : layers.indexOf(l) / (layers.length - 1)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  let out = `<svg id="chart" viewBox="0 0 ${W} ${H}" width="100%" style="max-width:${W}px" role="img" aria-label="S_l(b) per layer for every candidate">`;
  out += `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#999"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#999"/>`;
  for (const l of layers) out += `<text x="${x(l)}" y="${H - B + 14}" text-anchor="middle">${l}</text>`;
  out += `<text x="${(L + W - R) / 2}" y="${H - 3}" text-anchor="middle">layer</text>`;
  for (const v of [lo, (lo + hi) / 2, hi]) out += `<text x="${L - 4}" y="${y(v) + 4}" text-anchor="end">${v.toPrecision(3)}</text>`;
  ranked.forEach((c, k) => {
    const pts = layers.filter((l) => c.per_layer && c.per_layer[l] !== undefined).map((l) => [x(l), y(Number(c.per_layer[l])), l]);
    const col = colour(c.code, order);
    const dash = ["", "6 3", "2 2", "8 2 2 2"][k % 4];
    out += `<g class="series" data-code="${esc(c.code)}"><polyline fill="none" stroke="${col}" stroke-width="2" stroke-dasharray="${dash}" points="${pts.map((p) => `${p[0]},${p[1]}`).join(" ")}"><title>${esc(c.code)}</title></polyline>`;
    for (const [px, py, l] of pts) {
      const degen = (c.degenerate_layers || []).includes(l);
      out += degen ? `<text x="${px}" y="${py + 4}" text-anchor="middle" fill="${col}"><title>${esc(c.code)} layer ${l}: degenerate (bandwidth collapsed)</title>×</text>`
        : `<circle cx="${px}" cy="${py}" r="3" fill="${col}"><title>${esc(c.code)} layer ${l}: ${fmt(c.per_layer[l], 5)}</title></circle>`;
    }
    out += `<text x="${W - R + 6}" y="${T + 14 * k + 8}" fill="${col}">${esc(c.code)}${dash ? " (dashed)" : ""}</text></g>`;
  });
  return out + `</svg><p class="muted">× marks a degenerate layer (sets of 1-2 neurons: S_l carries no signal).</p>`;
}

function heatmap(lo) {
  if (!lo || !lo.codes || !lo.codes.length) return `<p class="muted">no overlap data in this ranking</p>`;
  const n = lo.codes.length, C = 30, P = 34;
  const flat = lo.overlap.flat();
  const max = Math.max(...flat, 1);
  let out = `<svg id="heatmap" viewBox="0 0 ${P + n * C} ${P + n * C}" width="100%" style="max-width:${P + n * C}px" role="img" aria-label="language overlap |T_i ∩ T_j| with similarity">`;
  lo.codes.forEach((c, i) => {
    out += `<text x="${P + i * C + C / 2}" y="${P - 6}" text-anchor="middle">${esc(c)}</text><text x="${P - 4}" y="${P + i * C + C / 2 + 4}" text-anchor="end">${esc(c)}</text>`;
  });
  lo.codes.forEach((a, i) => lo.codes.forEach((b, j) => {
    const v = lo.overlap[i][j], t = v / max; // one hue, light to dark: readable without colour vision
    const fill = `rgb(${Math.round(247 - t * 239)},${Math.round(251 - t * 167)},${Math.round(255 - t * 108)})`;
    out += `<rect class="hm" x="${P + j * C}" y="${P + i * C}" width="${C - 1}" height="${C - 1}" fill="${fill}"><title>${esc(a)} ∩ ${esc(b)}: ${v} neurons, similarity ${fmt(lo.similarity[i][j], 3)}</title></rect>`;
  }));
  const rows = lo.codes.map((a, i) => `<tr><th>${esc(a)}</th>${lo.codes.map((b, j) => `<td>${lo.overlap[i][j]} <span class="muted">(${fmt(lo.similarity[i][j], 2)})</span></td>`).join("")}</tr>`).join("");
  return `${out}</svg><details><summary>as a table (overlap, similarity)</summary><table id="overlap"><thead><tr><th></th>${lo.codes.map((c) => `<th>${esc(c)}</th>`).join("")}</tr></thead><tbody>${rows}</tbody></table></details>`;
}

function pval(x) {
  if (x === null || x === undefined) return "–";
  const v = Number(x);
  return v !== 0 && v < 0.001 ? v.toExponential(2) : v.toFixed(4);
}

const CLOSED_BY = {
  efficacy: "efficacy: a challenger beat the incumbent",
  futility: "futility: no challenger still showed an advantage at an interim look",
  final_look: "final look: no challenger beat the incumbent",
  no_challenger: "no challenger: only the incumbent was measured",
};

// The serving decision: the sequential paired test against the incumbent (bridgex.serving.Decision).
function decisionSection(r) {
  const served = r.served || {};
  const val = r.validation || {};
  const d = served.decision || val.decision;
  const notes = val.notes || {};
  if (!d) {
    const why = val.policy || served.policy ? ` (policy ${esc(served.policy || val.policy)})` : "";
    return `<p class="muted" id="no-decision">no paired test recorded${why}</p>`;
  }
  const looks = (d.looks || []).map((w, i) => {
    const state = i === d.look ? `<b>closed here</b> (${esc(d.words)} words measured)` : i < d.look ? "passed" : "not reached";
    return `<tr${i === d.look ? ` class="closing"` : ""}><td>${i + 1}</td><td>${esc(w)}</td><td>${pval((d.levels || [])[i])}</td><td>${state}</td></tr>`;
  }).join("");
  const yn = (b) => (b ? "yes" : "no");
  const tests = (d.tests || []).map((t) => `<tr data-condition="${esc(t.condition)}"${t.condition === d.served ? ` class="served"` : ""}>`
    + `<td>${t.condition === d.served ? `<b>${esc(t.condition)}</b>` : esc(t.condition)}</td><td>${esc(t.n)}</td><td>${esc(t.wins)}</td><td>${esc(t.losses)}</td>`
    + `<td>${pval(t.p_value)}</td><td>${pval(t.holm_level)}</td><td>${yn(t.significant)}</td><td>${yn(t.dropped)}</td></tr>`).join("");
  const errors = Object.entries(notes.errors || {}).filter(([, n]) => n);
  const failed = errors.reduce((a, [, n]) => a + Number(n), 0);
  const summary = {
    incumbent: d.incumbent,
    served: d.served,
    alpha: d.alpha,
    design: d.design,
    "closed by": `${CLOSED_BY[d.closed_by] || d.closed_by} (look ${Number(d.look) + 1} of ${(d.looks || []).length}, ${d.words} dev words)`,
    "failed generations excluded": failed ? `${failed} (${errors.map(([c, n]) => `${c}: ${n}`).join(", ")})` : "none",
    retried: notes.retried ?? "–",
  };
  if (notes.left_out) summary["left out"] = Object.entries(notes.left_out).map(([c, why]) => `${c}: ${why}`).join("; ");
  const diffs = Object.entries(notes.demo_differences || {});
  if (diffs.length) summary["demonstrations differing from the incumbent's"] = diffs.map(([c, v]) => `${c}: ${(v.not_in_incumbent || []).join(", ") || "–"} (${v.count} shown)`).join("; ");
  return `<table id="decision-summary" class="kv"><tbody>${Object.entries(summary).map(([k, v]) => `<tr><th scope="row">${esc(k)}</th><td data-key="${esc(k)}">${esc(v)}</td></tr>`).join("")}</tbody></table>
    <h4>Looks (planned dev words, level of each look)</h4>
    <table id="looks"><thead><tr><th scope="col">look</th><th scope="col">planned words</th><th scope="col">level</th><th scope="col">state</th></tr></thead><tbody>${looks}</tbody></table>
    <h4>Challengers against ${esc(d.incumbent)}</h4>
    ${tests ? `<table id="challengers"><thead><tr><th scope="col">condition</th><th scope="col">paired words n</th>
      <th scope="col"><abbr title="words only the challenger got right">wins +</abbr></th><th scope="col"><abbr title="words only the incumbent got right">losses −</abbr></th>
      <th scope="col">p (one-sided sign test)</th><th scope="col">Holm level</th><th scope="col">significant</th><th scope="col">stopped for futility</th></tr></thead><tbody>${tests}</tbody></table>`
    : `<p class="muted">no challenger</p>`}`;
}

// The demonstrations measured and served (their source words; the first k_shot, never the query word, are used).
function demosSection(r) {
  const served = r.served || {};
  const val = r.validation || {};
  const words = served.demo_words;
  if (!Array.isArray(words) || !words.length) {
    const why = Array.isArray(words) ? `zero-shot: k_shot ${esc(val.k_shot ?? 0)}` : "this ranking does not record them";
    return `<p class="muted" id="no-demos">no demonstrations (${why})</p>`;
  }
  const k = Number(val.k_shot ?? words.length);
  const shown = Object.entries((val.notes && val.notes.demos) || {});
  const byCondition = shown.length
    ? `<h4>Shown per condition (a bridged chain shows the words its s→b dictionary has)</h4>
    <table id="demos-by-condition"><thead><tr><th scope="col">condition</th><th scope="col">demonstration words</th></tr></thead>
    <tbody>${shown.map(([c, ws]) => `<tr><th scope="row">${esc(c)}</th><td style="text-align:left">${esc((ws || []).join(", "))}</td></tr>`).join("")}</tbody></table>`
    : "";
  return `<p class="muted">Source words, in order; a translation uses the first ${esc(k)} of them that are not the word asked.</p>
    <ol id="demo-words">${words.map((w, i) => `<li${i < k ? ` class="first-k"` : ""}>${esc(w)}</li>`).join("")}</ol>${byCondition}`;
}

async function pairPage(main, source, target, params) {
  const config = params.get("config") || "";
  const r = await api(`/bridges/${source}/${target}${config ? `?config=${encodeURIComponent(config)}` : ""}`);
  const ranked = [...(r.ranked || [])].sort((a, b) => a.rank - b.rank);
  const order = ranked.map((c) => c.code);
  const layers = r.layers || [...new Set(ranked.flatMap((c) => Object.keys(c.per_layer || {}).map(Number)))].sort((a, b) => a - b);
  const served = r.served || {};
  const scores = (r.validation && r.validation.scores) || {};
  const dev = Object.entries(scores).map(([c, v]) => `<tr><td>${esc(c)}</td><td>${v.hits}/${v.n}</td><td>${fmt(v.p_at_1, 3)}</td><td>[${fmt(v.ci[0], 3)}, ${fmt(v.ci[1], 3)}]</td></tr>`).join("");
  const sizes = layers.map((l) => `<tr><td>${l}</td><td>${(r.pair_set_sizes || {})[l] ?? "–"}</td>${ranked.map((c) => `<td>${(c.set_sizes || {})[l] ?? "–"}</td>`).join("")}</tr>`).join("");
  const counts = r.probe_counts || {};
  const prov = {
    model: `${r.model_id || (r.provenance || {}).model_id || ""}@${r.revision || (r.provenance || {}).revision || ""}`,
    "probe hash": r.probe_hash, "probe set": `${counts.size ?? r.probe_size ?? "–"} words (${r.probe_filter || "–"}; gold filter kept ${counts.kept ?? "–"} of ${counts.tried ?? "–"} tried)`,
    config: r.config, created_at: r.created_at, params: JSON.stringify(r.params || {}),
  };
  main.innerHTML = `
    <h2>${esc(source)} → ${esc(target)}: ${served.bridge ? `bridge <b>${esc(served.bridge)}</b>` : "<b>no bridge</b>"} served <span class="muted">(${esc(served.policy || "")}: ${esc(served.reason || "")})</span></h2>
    <p><button id="reanalyse" type="button">Re-analyse</button> <button id="invalidate" type="button">Invalidate</button> <span id="action" class="muted" role="status"></span></p>
    <div class="grid">
      <section><h3>Ranked candidates (HSIC)</h3><table id="ranked"><thead><tr><th>rank</th><th>bridge</th><th>score</th><th>coverage</th></tr></thead><tbody>
        ${ranked.map((c) => `<tr><td>${c.rank}</td><td><i class="swatch" style="background:${colour(c.code, order)}"></i>${esc(c.code)}</td><td>${fmt(c.score, 5)}</td><td>${fmt(c.coverage, 2)}</td></tr>`).join("")}</tbody></table></section>
      <section><h3>S<sub>l</sub>(b) per layer</h3>${lineChart(ranked, layers, order)}</section>
      <section><h3>Set sizes per layer</h3><table id="sizes"><thead><tr><th>layer</th><th>X (pair)</th>${order.map((c) => `<th>Y<sub>${esc(c)}</sub></th>`).join("")}</tr></thead><tbody>${sizes}</tbody></table></section>
      <section><h3>Dev accuracy (P@1, Wilson 95%)</h3>${dev ? `<table id="dev"><thead><tr><th>condition</th><th>hits</th><th>P@1</th><th>interval</th></tr></thead><tbody>${dev}</tbody></table>` : `<p class="muted">no validation ran</p>`}</section>
      <section class="wide" id="decision" aria-labelledby="decision-h"><h3 id="decision-h">Serving decision</h3>${decisionSection(r)}</section>
      <section id="demos" aria-labelledby="demos-h"><h3 id="demos-h">Demonstrations</h3>${demosSection(r)}</section>
      <section><h3>Language overlap (method step 1)</h3>${heatmap(r.language_overlap)}</section>
      <section><h3>Provenance</h3><table id="provenance"><tbody>${Object.entries(prov).map(([k, v]) => `<tr><th>${esc(k)}</th><td style="text-align:left">${esc(v ?? "–")}</td></tr>`).join("")}</tbody></table></section>
    </div>`;
  const act = (fn) => async () => { try { showError(null); await fn(); } catch (err) { showError(err); } };
  $("#reanalyse", main).addEventListener("click", act(async () => {
    const job = await api("/analyze", { method: "POST", body: JSON.stringify({ source, target }) });
    $("#action", main).textContent = `analysis ${job.id} ${job.state}`;
  }));
  $("#invalidate", main).addEventListener("click", act(async () => {
    await api(`/bridges/${source}/${target}${config ? `?config=${encodeURIComponent(config)}` : ""}`, { method: "DELETE" });
    $("#action", main).textContent = "invalidated";
  }));
}

// ------------------------------------------------------------------------------------------- jobs
function jobRows(jobs) {
  const now = Date.now();
  return jobs.map((j) => {
    const start = j.started_at ? Date.parse(j.started_at) : null;
    const end = j.finished_at ? Date.parse(j.finished_at) : now;
    const el = start ? `${Math.round((end - start) / 1000)} s` : "–";
    const req = j.request || {};
    const live = j.state === "queued" || j.state === "running";
    return `<tr data-job="${esc(j.id)}"><td>${esc(req.source)}→${esc(req.target)}</td><td class="state">${esc(j.state)}</td><td>${esc(j.progress.stage)}</td>
      <td><progress max="100" value="${j.progress.percent}"></progress> <span class="percent">${Math.round(j.progress.percent)}%</span></td><td>${el}</td>
      <td style="text-align:left">${esc(j.error || "")}</td><td>${live ? `<button class="cancel" data-id="${esc(j.id)}" type="button">Cancel</button>` : ""}</td></tr>`;
  }).join("");
}

async function jobsPage(main) {
  main.innerHTML = `
    <h2>Analysis jobs</h2>
    <form class="row" id="start"><label>source<input name="source" size="5" required></label><label>target<input name="target" size="5" required></label><button type="submit">Start analysis</button><span id="started" class="muted" role="status"></span></form>
    <table id="jobs"><thead><tr><th>pair</th><th>state</th><th>stage</th><th>progress</th><th>elapsed</th><th>error</th><th></th></tr></thead><tbody></tbody></table>`;
  const body = $("#jobs tbody", main);
  const refresh = async () => {
    const data = await api("/jobs?limit=50");
    body.innerHTML = jobRows(data.jobs);
  };
  body.addEventListener("click", async (e) => {
    const id = e.target.dataset && e.target.dataset.id;
    if (!id) return;
    try { await api(`/jobs/${id}/cancel`, { method: "POST" }); await refresh(); } catch (err) { showError(err); }
  });
  $("#start", main).addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    try {
      const job = await api("/analyze", { method: "POST", body: JSON.stringify({ source: f.get("source").trim(), target: f.get("target").trim() }) });
      $("#started", main).textContent = `job ${job.id} ${job.state}`;
      showError(null);
      await refresh();
    } catch (err) { showError(err); }
  });
  await refresh();
  const t = setInterval(() => refresh().catch(showError), 1000);
  return () => clearInterval(t);
}

// ------------------------------------------------------------------------------------------- translate
function resultTable(r, req) {
  const src = r.detected_source || req.source;
  const chain = r.bridge ? `${src}:"${req.text}"→${r.bridge}:"${r.bridge_text ?? ""}"→${req.target}:"${r.translation}"`
    : `${src}:"${req.text}"→${req.target}:"${r.translation}"`;
  const t = r.timings || {};
  const alts = (r.alternatives || []).map((a) => `<li><span class="alt">${esc(a.translation)}</span> <span class="muted">${fmt(a.confidence, 3)}</span></li>`).join("");
  const g = r.glossary;
  const gloss = g ? `${esc(g.id || "")}: ${g.direct ? "answered from the glossary" : `applied ${esc((g.applied || []).join(", ") || "none")}`}${(g.missing || []).length ? `; missing ${esc(g.missing.join(", "))}` : ""}` : "–";
  return `
    <p>Answer: <b id="answer">${esc(r.translation)}</b>
      <span id="confidence" class="muted" title="how sure the model was of the answer's own tokens (exp mean log-probability); not the chance it is right">confidence ${fmt(r.confidence, 3)}</span></p>
    <p class="chain" id="chain">${esc(chain)}</p>
    ${alts ? `<h3>Alternatives</h3><ol id="alternatives">${alts}</ol>` : ""}
    <table class="kv"><tbody>
      <tr><th>source</th><td id="detected">${r.detected_source ? `${esc(r.detected_source)} (detected, confidence ${fmt(r.detection_confidence, 3)})` : esc(req.source)}</td></tr>
      <tr><th>bridge</th><td id="bridge">${esc(r.bridge || "none")}</td></tr>
      <tr><th>bridge_source</th><td id="bridge-source">${esc(r.bridge_source)}</td></tr>
      <tr><th>why</th><td>${esc(r.bridge_reason || "–")}</td></tr><tr><th>k_shot</th><td>${r.k_shot}</td></tr>
      <tr><th>glossary</th><td id="glossary-use">${gloss}</td></tr>
      <tr><th>warnings</th><td id="warnings">${esc((r.warnings || []).join("; ") || "none")}</td></tr>
      <tr><th>timings</th><td>bridge lookup ${fmt(t.bridge_lookup_ms, 1)} ms, bridge step ${fmt(t.bridge_step_ms, 1)} ms, target step ${fmt(t.target_step_ms, 1)} ms, total ${fmt(t.total_ms, 1)} ms</td></tr></tbody></table>`;
}

// server-sent events of POST /translate with stream=true: the answer grows as it arrives, then the whole result
async function streamTranslate(req, onDelta) {
  const headers = { "content-type": "application/json" };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.authorization = `Bearer ${key}`;
  const resp = await fetch("/translate", { method: "POST", headers, body: JSON.stringify({ ...req, stream: true }) });
  if (!resp.ok) {
    let body = null;
    try { body = await resp.json(); } catch (_) { body = null; }
    if (resp.status === 401 || resp.status === 403) showKeyForm();
    throw new ApiError(resp.status, `${resp.status}: ${(body && body.message) || resp.statusText}`);
  }
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  let done = null;
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) break;
    buf += dec.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const ev = (block.match(/^event: (.*)$/m) || [])[1];
      const data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1] || "null");
      if (ev === "delta") onDelta(data.text);
      else if (ev === "done") done = data;
      else if (ev === "error") throw new ApiError(424, data.message);
    }
  }
  if (!done) throw new ApiError(0, "the stream ended without a result");
  return done;
}

async function translatePage(main) {
  main.innerHTML = `
    <h2>Translate</h2>
    <form class="row" id="tr"><label>text<input name="text" required size="24"></label>
      <label>source<input name="source" size="5" required value="auto" title="a code, or auto to detect it"></label>
      <label>target<input name="target" size="5" required></label><label>bridge<input name="bridge" size="6" value="auto"></label>
      <label>task<select name="task"><option value="word">word</option><option value="text">text</option></select></label>
      <label>k_shot<input name="k_shot" type="number" min="0" max="16" size="3"></label>
      <label>alternatives<input name="alternatives" type="number" min="1" max="5" value="1" size="2"></label>
      <label>glossary<select name="glossary_id" id="glossary-pick"><option value="">none</option></select></label>
      <label class="inline"><input name="stream" type="checkbox"> stream (text)</label>
      <button type="submit">Translate</button></form>
    <div id="result" aria-live="polite"></div>`;
  try {
    const gl = await api("/glossaries");
    const items = (gl && (gl.glossaries || gl.items || gl)) || [];
    $("#glossary-pick", main).insertAdjacentHTML("beforeend", (Array.isArray(items) ? items : []).map((g) => `<option value="${esc(g.id)}">${esc(g.name || g.id)} (${esc(g.source)}→${esc(g.target)})</option>`).join(""));
  } catch (_) { /* no glossaries for this key (or none allowed): the list stays empty */ }
  $("#tr", main).addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const req = { text: f.get("text"), source: f.get("source").trim() || "auto", target: f.get("target").trim(), bridge: f.get("bridge").trim() || "auto", task: f.get("task") };
    if (f.get("k_shot") !== "") req.k_shot = Number(f.get("k_shot"));
    if (Number(f.get("alternatives")) > 1) req.alternatives = Number(f.get("alternatives"));
    if (f.get("glossary_id")) req.glossary_id = f.get("glossary_id");
    const out = $("#result", main);
    try {
      let r;
      if (f.get("stream") && req.task === "text") {
        out.innerHTML = `<p>Answer: <b id="answer"></b> <span class="muted">streaming…</span></p>`;
        r = await streamTranslate(req, (d) => { $("#answer", out).textContent += d; });
      } else {
        r = await api("/translate", { method: "POST", body: JSON.stringify(req) });
      }
      showError(null);
      out.innerHTML = resultTable(r, req);
    } catch (err) { showError(err); }
  });
}

// ------------------------------------------------------------------------------------------- usage
function usageRow(name, u) {
  return `<tr data-period="${esc(name)}"><th>${esc(name)}</th><td>${u.requests}</td><td>${u.characters}</td><td>${u.generated_tokens}</td><td>${u.analyses}</td></tr>`;
}

async function usagePage(main) {
  const u = await api("/usage");
  const q = u.quota;
  main.innerHTML = `
    <h2>Usage of this key</h2>
    <p class="muted">key id <code id="key-id">${esc(u.key_id)}</code>; today's counters start again at ${esc(u.period_resets_at)} (UTC midnight)</p>
    <table id="usage"><thead><tr><th></th><th>requests</th><th>characters</th><th>generated tokens</th><th>analyses</th></tr></thead>
      <tbody>${usageRow("this minute", u.minute)}${usageRow("today", u.today)}${usageRow("total", u.total)}</tbody></table>
    <p id="quota">${q ? `Quota: ${q.characters_used} of ${q.chars_per_day} characters today, ${q.characters_remaining} left` : "No daily quota on this key."}</p>`;
}

// ------------------------------------------------------------------------------------------- router
async function route() {
  const token = ++routeToken;
  if (cleanup) { cleanup(); cleanup = null; }
  const [path, query] = (location.hash.replace(/^#/, "") || "/matrix").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  const page = parts[0] || "matrix";
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  $("#page").innerHTML = `<p class="muted">loading…</p>`;
  showError(null);
  const main = document.createElement("div"); // rendered off-screen, shown only if still the current page
  let stop = null;
  try {
    if (page === "pair" && parts.length === 3) await pairPage(main, parts[1], parts[2], params);
    else if (page === "jobs") stop = await jobsPage(main);
    else if (page === "translate") await translatePage(main);
    else if (page === "usage") await usagePage(main);
    else await matrixPage(main, params);
  } catch (err) {
    if (token === routeToken) { $("#page").innerHTML = ""; showError(err); }
    return;
  }
  if (token !== routeToken) { if (stop) stop(); return; }
  cleanup = stop;
  $("#page").replaceChildren(main);
}

$("#key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY, $("#api-key").value.trim());
  $("#api-key").value = "";
  $("#key-form").hidden = true;
  route();
});
$("#key-change").addEventListener("click", showKeyForm);
window.addEventListener("hashchange", route);
route();

// ZeroGEX live screen: reads the levels API, draws with plotly.js (served from the plotly wheel), and moves
// with the server's push (Server-Sent Events on /api/v1/<u>/events). Units: prices USD, GEX USD per 1% move
// (dealer convention: long calls +, short puts -), times America/New_York.
"use strict";

(function () {
  const U = document.body.dataset.underlying;
  const API = `/api/v1/${U.toLowerCase()}`;
  const TZ = "America/New_York";
  const C = { call: "#2fbf71", put: "#e5484d", zg: "#b084f5", spot: "#f2f5f9", mp: "#9aa5b5", net: "#f5c542",
              grid: "#243040", text: "#d9e1ec", muted: "#8a97a8", panel: "#131a23" };
  const state = {
    day: null, newest: null, follow: true, expiration: "all", latest: null, intraday: [], live: [],
    lastLiveTs: null, renders: { levels: 0, strikes: 0, profile: 0, intraday: 0, heatmap: 0, alerts: 0 },
    events: 0, loading: null, meta: null,
  };
  window.zerogex = state;  // for people poking at the page, and for the browser test

  // ---------------------------------------------------------------- formatting
  const $ = (id) => document.getElementById(id);
  const isNum = (v) => typeof v === "number" && isFinite(v);
  function usd(v, digits = 2) {
    return isNum(v) ? "$" + v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }) : "–";
  }
  function usdCompact(v) {  // the CLI's format: +$1.23bn, -$45.60m
    if (!isNum(v)) return "–";
    const sign = v >= 0 ? "+" : "-", mag = Math.abs(v);
    for (const [t, s] of [[1e9, "bn"], [1e6, "m"], [1e3, "k"]]) {
      if (mag >= t) return `${sign}$${(mag / t).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}${s}`;
    }
    return `${sign}$${mag.toFixed(0)}`;
  }
  const etParts = new Intl.DateTimeFormat("en-CA", { timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  function et(iso) {  // "2025-01-15 10:35:00" wall time in New York (plotly draws it as is)
    const p = Object.fromEntries(etParts.formatToParts(new Date(iso)).map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
  }
  const etTime = (iso) => et(iso).slice(11, 19);
  function age(seconds) {
    if (!isNum(seconds)) return "–";
    const s = Math.max(0, Math.round(seconds));
    if (s < 120) return `${s} s`;
    if (s < 7200) return `${Math.floor(s / 60)} min`;
    if (s < 172800) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }
  function scaleOf(values) {  // $bn when the largest magnitude reaches 2bn, else $M
    let m = 0;
    for (const v of values) if (isNum(v)) m = Math.max(m, Math.abs(v));
    return m >= 2e9 ? { f: 1e9, u: "$bn" } : { f: 1e6, u: "$M" };
  }
  const scaled = (arr, s) => arr.map((v) => (isNum(v) ? v / s.f : null));

  async function getJSON(path) {
    const r = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    let body = null;
    try { body = await r.json(); } catch (e) { body = { error: `${r.status} ${r.statusText}` }; }
    if (!r.ok) { const err = new Error(body.error || r.statusText); err.status = r.status; throw err; }
    return body;
  }
  function banner(text) {
    const b = $("banner");
    b.textContent = text || "";
    b.classList.toggle("hidden", !text);
  }

  // ---------------------------------------------------------------- plotly
  const CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
  function baseLayout(extra) {
    return Object.assign({
      paper_bgcolor: C.panel, plot_bgcolor: C.panel, font: { color: C.text, size: 11 },
      margin: { l: 62, r: 16, t: 10, b: 44 }, showlegend: true,
      legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom", font: { size: 10 }, bgcolor: "rgba(0,0,0,0)" },
      hovermode: "x unified", hoverlabel: { bgcolor: "#1c2533", bordercolor: C.grid, font: { color: C.text } },
    }, extra);
  }
  const axis = (title, extra) => Object.assign({ title: { text: title, font: { size: 11, color: C.muted } },
    gridcolor: C.grid, zerolinecolor: "#3a4a60", linecolor: C.grid, tickfont: { size: 10 } }, extra || {});
  function vline(x, color, dash, label, row) {  // a level across the plot, its label on its own row
    if (!isNum(x)) return [[], []];
    const shape = { type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1, line: { color, width: 1.4, dash } };
    const note = { xref: "x", yref: "paper", x, y: 0.99 - 0.075 * (row || 0), xanchor: "left", yanchor: "top", xshift: 3,
                   text: label, showarrow: false, font: { size: 10, color }, bgcolor: "rgba(13,17,23,.8)" };
    return [[shape], [note]];
  }
  function draw(id, traces, layout) {
    const el = $(id);
    const note = el.querySelector(".placeholder");
    if (note) note.remove();
    Plotly.react(el, traces, layout, CONFIG);
  }
  function placeholder(id, text) {  // a chart with nothing to show: say why, instead of a stale picture
    const el = $(id);
    Plotly.purge(el);
    const note = document.createElement("div");
    note.className = "placeholder";
    note.textContent = text;
    el.replaceChildren(note);
    delete el.dataset.snapshot;
  }

  // ---------------------------------------------------------------- levels strip
  function renderLevels(payload) {
    const l = payload.levels;
    $("v-spot").textContent = usd(l.spot);
    $("s-spot").textContent = payload.source === "live" && l.spot_ts ? `spot at ${etTime(l.spot_ts)} ET` : `at ${etTime(l.snapshot_ts)} ET`;
    const net = $("v-net");
    net.textContent = usdCompact(l.net_gex);
    net.className = "v " + (l.net_gex > 0 ? "pos" : l.net_gex < 0 ? "neg" : "");
    $("s-net").textContent = `at spot ${usdCompact(l.net_gex_at_spot)}`;
    $("v-zg").textContent = isNum(l.zero_gamma) ? usd(l.zero_gamma) : "none";
    $("s-zg").textContent = isNum(l.zero_gamma) && isNum(l.spot)
      ? `spot ${((l.spot - l.zero_gamma) / l.spot * 100).toFixed(2)}% ${l.spot >= l.zero_gamma ? "above" : "below"}`
      : (l.zero_gamma_reason || "");
    $("v-cw").textContent = usd(l.call_wall, 0);
    $("s-cw").textContent = isNum(l.call_wall_gex) ? `${usdCompact(l.call_wall_gex)} call GEX` : "";
    $("v-pw").textContent = usd(l.put_wall, 0);
    $("s-pw").textContent = isNum(l.put_wall_gex) ? `${usdCompact(l.put_wall_gex)} put GEX` : "";
    $("v-mp").textContent = usd(l.max_pain_next, 0);
    const nextExp = l.max_pain ? Object.keys(l.max_pain).sort()[0] : null;
    $("s-mp").textContent = nextExp ? `expiration ${nextExp}` : "";
    const regime = payload.regime || "–";
    $("v-regime").innerHTML = `<span class="badge ${regime}">${regime === "positive" ? "+ gamma" : regime === "negative" ? "− gamma" : regime}</span>`;
    $("s-regime").textContent = regime === "positive" ? "dealers damp moves" : regime === "negative" ? "dealers amplify moves" : "";
    state.shown = payload;
    tickAge();
    let src = payload.source === "live"
      ? `<b>live</b> levels (live_levels, feed <b>${payload.feed || "?"}</b>, every engine interval)`
      : `<b>stored</b> snapshot (gex_levels, data <b>${payload.feed || "?"}</b>)`;
    if (payload.source !== "live" && !payload.feed) {
      src = "<b>stored</b> snapshot (gex_levels)";
    }
    $("provenance").innerHTML = `${src} · snapshot ${l.session_date} ${etTime(l.snapshot_ts)} ET · `
      + `${l.expirations} expirations, ${l.contracts} contracts · ${payload.convention}`;
    state.renders.levels += 1;
  }
  function tickAge() {
    const p = state.shown;
    if (!p) return;
    const seconds = (Date.now() - Date.parse(p.levels.snapshot_ts)) / 1000;
    const el = $("v-age");
    el.textContent = age(seconds);
    el.className = "v " + (seconds > (p.source === "live" ? 30 : 900) ? "stale" : "");
    $("s-age").textContent = p.source === "live" ? "since the live computation" : "since the snapshot";
  }
  setInterval(tickAge, 1000);

  // ---------------------------------------------------------------- charts
  function renderStrikes(d) {
    const s = scaleOf(d.call_gex.concat(d.put_gex));
    const hover = `strike %{x:$,.0f}<br>%{y:,.1f} ${s.u}`;
    const traces = [
      { type: "bar", name: "call GEX (+)", x: d.strikes, y: scaled(d.call_gex, s), marker: { color: C.call }, hovertemplate: hover },
      { type: "bar", name: "put GEX (−)", x: d.strikes, y: scaled(d.put_gex, s), marker: { color: C.put }, hovertemplate: hover },
      { type: "scatter", mode: "lines", name: "net", x: d.strikes, y: scaled(d.net_gex, s), line: { color: C.net, width: 1.6 }, hovertemplate: hover },
    ];
    const lv = d.levels;
    const mp = d.expiration === "all" ? lv.max_pain_next : d.selection.max_pain;
    const parts = [vline(lv.spot, C.spot, "solid", `spot ${usd(lv.spot)}`, 0),
      vline(lv.zero_gamma, C.zg, "dash", `zero γ ${usd(lv.zero_gamma)}`, 1),
      vline(lv.call_wall, C.call, "dot", `call wall ${usd(lv.call_wall, 0)}`, 2),
      vline(lv.put_wall, C.put, "dot", `put wall ${usd(lv.put_wall, 0)}`, 3),
      vline(mp, C.mp, "dashdot", `max pain ${usd(mp, 0)}`, 4)];
    const lo = lv.spot * 0.95, hi = lv.spot * 1.05;
    draw("c-strikes", traces, baseLayout({
      barmode: "relative", bargap: 0.15, uirevision: `${d.session_date}|${d.expiration}`,
      xaxis: axis("strike, USD", { range: [lo, hi], tickprefix: "$" }),
      yaxis: axis(`GEX, ${s.u} per 1% move`),
      shapes: parts.flatMap((p) => p[0]), annotations: parts.flatMap((p) => p[1]),
    }));
    const $el = $("c-strikes");
    $el.dataset.snapshot = d.snapshot_ts;
    $el.dataset.expiration = d.expiration;
    $("t-strikes").textContent = `GEX by strike · ${expLabel(d)} · ${d.session_date} ${etTime(d.snapshot_ts)} ET`;
    renderExpirationButtons(d);
    state.renders.strikes += 1;
  }
  function expLabel(d) {
    if (d.expiration === "all") return d.expirations ? `all ${d.expirations.length} expirations` : "all expirations";
    return d.expiration === d.session_date ? `0DTE (expiration ${d.expiration})` : `expiration ${d.expiration}`;
  }
  function renderExpirationButtons(d) {
    const box = $("expirations");
    const options = [["all", `All (${d.expirations.length})`]].concat(d.expirations.map((e) =>
      [e, e === d.session_date ? `0DTE ${e.slice(5)}` : e.slice(5)]));
    const settled = new Set(d.settled_expirations || []);
    box.replaceChildren(...options.map(([value, label]) => {
      const b = document.createElement("button");
      b.textContent = label;
      b.dataset.expiration = value;
      b.className = value === state.expiration ? "on" : "";
      if (settled.has(value)) { b.disabled = true; b.title = "settled by this snapshot"; }
      b.addEventListener("click", () => { state.expiration = value; loadStrikes(); loadHeatmap(); });
      return b;
    }));
  }
  function renderProfile(d) {
    const s = scaleOf(d.net_gex);
    const y = scaled(d.net_gex, s);
    const traces = [
      { type: "scatter", mode: "lines", name: "net GEX > 0", x: d.spot_levels, y: y.map((v) => (v > 0 ? v : 0)), fill: "tozeroy",
        line: { width: 0 }, fillcolor: "rgba(47,191,113,.25)", hoverinfo: "skip", showlegend: false },
      { type: "scatter", mode: "lines", name: "net GEX < 0", x: d.spot_levels, y: y.map((v) => (v < 0 ? v : 0)), fill: "tozeroy",
        line: { width: 0 }, fillcolor: "rgba(229,72,77,.25)", hoverinfo: "skip", showlegend: false },
      { type: "scatter", mode: "lines", name: "net GEX (all contracts)", x: d.spot_levels, y, line: { color: "#5aa9ff", width: 2 },
        hovertemplate: `spot %{x:$,.2f}<br>%{y:,.2f} ${s.u}` },
      { type: "scatter", mode: "lines", name: "DTE-weighted (zero γ basis)", x: d.spot_levels, y: scaled(d.net_gex_structural, s),
        line: { color: "#f0a050", width: 1.2, dash: "dot" }, hovertemplate: `%{y:,.2f} ${s.u}` },
    ];
    if (isNum(d.zero_gamma)) {
      traces.push({ type: "scatter", mode: "markers", name: `zero γ ${usd(d.zero_gamma)}`, x: [d.zero_gamma], y: [0],
        marker: { color: C.zg, size: 9, symbol: "diamond" }, hovertemplate: "zero gamma %{x:$,.2f}" });
    }
    const parts = [vline(d.spot, C.spot, "solid", `spot ${usd(d.spot)}`, 0), vline(d.zero_gamma, C.zg, "dash", `zero γ ${usd(d.zero_gamma)}`, 1)];
    draw("c-profile", traces, baseLayout({
      uirevision: d.session_date, hovermode: "closest",
      xaxis: axis("underlying price if spot moved, USD", { tickprefix: "$", range: [d.spot * 0.94, d.spot * 1.06] }),
      yaxis: axis(`net GEX, ${s.u} per 1% move`),
      shapes: parts.flatMap((p) => p[0]), annotations: parts.flatMap((p) => p[1]),
    }));
    $("c-profile").dataset.snapshot = d.snapshot_ts;
    $("t-profile").textContent = `Gamma profile · ${etTime(d.snapshot_ts)} ET`;
    state.renders.profile += 1;
  }
  function renderIntraday() {
    const rows = state.intraday, live = state.live;
    const t = rows.map((r) => et(r.snapshot_ts)), tl = live.map((r) => et(r.snapshot_ts));
    const s = scaleOf(rows.map((r) => r.net_gex).concat(live.map((r) => r.net_gex)));
    const col = (arr, k) => arr.map((r) => (isNum(r[k]) ? r[k] : null));
    const traces = [
      { type: "scatter", mode: "lines", name: "spot", x: t, y: col(rows, "spot"), line: { color: C.spot, width: 1.8 }, hovertemplate: "%{y:$,.2f}" },
      { type: "scatter", mode: "lines", name: "zero γ", x: t, y: col(rows, "zero_gamma"), line: { color: C.zg, width: 1.4, dash: "dash" }, hovertemplate: "%{y:$,.2f}" },
      { type: "scatter", mode: "lines", name: "call wall", x: t, y: col(rows, "call_wall"), line: { color: C.call, width: 1.4, shape: "hv" }, hovertemplate: "%{y:$,.0f}" },
      { type: "scatter", mode: "lines", name: "put wall", x: t, y: col(rows, "put_wall"), line: { color: C.put, width: 1.4, shape: "hv" }, hovertemplate: "%{y:$,.0f}" },
      { type: "bar", name: "net GEX", x: t, y: scaled(col(rows, "net_gex"), s), yaxis: "y2", showlegend: false,
        marker: { color: col(rows, "net_gex").map((v) => (v >= 0 ? C.call : C.put)) }, hovertemplate: `net %{y:,.2f} ${s.u}` },
    ];
    if (live.length) {
      const mode = live.length < 60 ? "lines+markers" : "lines";  // a few live rows would be invisible as lines
      traces.push(
        { type: "scatter", mode, marker: { size: 4 }, name: "spot (live)", x: tl, y: col(live, "spot"), line: { color: "#7fd4ff", width: 1.2 }, hovertemplate: "%{y:$,.2f}" },
        { type: "scatter", mode, marker: { size: 4 }, name: "zero γ (live)", x: tl, y: col(live, "zero_gamma"), line: { color: C.zg, width: 1, dash: "dot" }, hovertemplate: "%{y:$,.2f}" },
        { type: "scatter", mode, marker: { size: 4 }, name: "net GEX (live)", x: tl, y: scaled(col(live, "net_gex"), s), yaxis: "y2", line: { color: C.net, width: 1.2 }, hovertemplate: `%{y:,.2f} ${s.u}` });
    }
    draw("c-intraday", traces, baseLayout({
      uirevision: state.day, bargap: 0.1,
      xaxis: axis("time, America/New_York", { type: "date", tickformat: "%H:%M", anchor: "y2" }),
      yaxis: axis("price, USD", { domain: [0.34, 1], tickprefix: "$" }),
      yaxis2: axis(`net GEX, ${s.u}/1%`, { domain: [0, 0.26] }),
      margin: { l: 62, r: 16, t: 10, b: 40 },
    }));
    const el = $("c-intraday");
    el.dataset.rows = String(rows.length);
    el.dataset.liveRows = String(live.length);
    $("t-intraday").textContent = `Intraday levels · ${state.day} · ${rows.length} stored snapshots${live.length ? `, ${live.length} live` : ""}`;
    state.renders.intraday += 1;
  }
  function renderHeatmap(d) {
    const flat = [].concat(...d.net_gex);
    const s = scaleOf(flat);
    const t = d.snapshot_ts.map(et);
    const z = d.net_gex.map((row) => scaled(row, s));
    // colour range: the 98th percentile of |net GEX|, so one dominant strike does not wash out the rest
    const mags = [];
    for (const row of z) for (const v of row) if (isNum(v)) mags.push(Math.abs(v));
    mags.sort((a, b) => a - b);
    const m = mags.length ? mags[Math.floor(0.98 * (mags.length - 1))] || mags[mags.length - 1] : 1;
    const spots = d.spot.filter(isNum);
    const lo = Math.min(...spots) * 0.985, hi = Math.max(...spots) * 1.015;
    const traces = [
      { type: "heatmap", x: t, y: d.strikes, z, zmid: 0, zmin: -m, zmax: m, name: "net GEX",
        colorscale: [[0, "#ff3b45"], [0.25, "#a3242c"], [0.45, "#2a1a20"], [0.5, "#131a23"], [0.55, "#16301f"], [0.75, "#1f8a4f"], [1, "#3dff95"]],
        colorbar: { title: { text: `net GEX<br>${s.u} per 1%<br>(clipped at<br>±${m.toFixed(1)})`, font: { size: 10 } }, thickness: 12, tickfont: { size: 10 } },
        hovertemplate: `%{x|%H:%M} ET · strike %{y:$,.0f}<br>net %{z:,.1f} ${s.u}<extra></extra>` },
      { type: "scatter", mode: "lines", name: "spot", x: t, y: d.spot, line: { color: C.spot, width: 1.6 }, hovertemplate: "spot %{y:$,.2f}<extra></extra>" },
    ];
    if (state.intraday.length && state.intraday[0].session_date === d.session_date) {
      traces.push({ type: "scatter", mode: "lines", name: "zero γ", x: state.intraday.map((r) => et(r.snapshot_ts)),
        y: state.intraday.map((r) => (isNum(r.zero_gamma) ? r.zero_gamma : null)), line: { color: C.zg, width: 1.4, dash: "dash" },
        hovertemplate: "zero γ %{y:$,.2f}<extra></extra>" });
    }
    draw("c-heatmap", traces, baseLayout({
      uirevision: `${d.session_date}|${d.expiration}`, hovermode: "closest",
      xaxis: axis("time, America/New_York", { type: "date", tickformat: "%H:%M" }),
      yaxis: axis("strike, USD", { range: [lo, hi], tickprefix: "$" }),
      legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom", font: { size: 10 } },
      margin: { l: 62, r: 10, t: 10, b: 40 },
    }));
    const el = $("c-heatmap");
    el.dataset.snapshots = String(d.snapshot_ts.length);
    $("t-heatmap").textContent = `Net GEX by strike × time · ${d.session_date} · ${expLabel(d)}`;
    state.renders.heatmap += 1;
  }
  const KIND = { zero_gamma_cross: "zero-γ cross", call_wall_breach: "call wall breach", put_wall_breach: "put wall breach",
                 net_gex_sign_change: "net GEX sign" };
  function renderAlerts(d) {
    const box = $("alerts");
    $("t-alerts").textContent = `Alerts · ${d.session_date} · ${d.alerts.length}`;
    if (!d.alerts.length) {
      box.innerHTML = `<div class="empty">No alerts stored for ${d.session_date}. Alerts (zero-gamma crosses, wall breaches, net-GEX sign changes) are written by the ${U.toLowerCase()}_levels_alerts sensor of <code>make ui</code>.</div>`;
    } else {
      const rows = d.alerts.slice().reverse().map((a) => {
        const tr = document.createElement("tr");
        const cells = [etTime(a.snapshot_ts).slice(0, 5), KIND[a.kind] || a.kind, a.direction === "up" ? "▲ up" : "▼ down",
          usd(a.spot), a.kind === "net_gex_sign_change" ? usdCompact(a.value_after) : usd(a.level)];
        cells.forEach((text, i) => {
          const td = document.createElement("td");
          td.textContent = text;
          if (i === 2) td.className = a.direction;
          tr.appendChild(td);
        });
        tr.title = a.message;
        return tr;
      });
      const table = document.createElement("table");
      table.innerHTML = "<thead><tr><th>ET</th><th>event</th><th></th><th>spot</th><th>level / net GEX</th></tr></thead>";
      const body = document.createElement("tbody");
      body.append(...rows);
      table.appendChild(body);
      box.replaceChildren(table);
    }
    box.dataset.count = String(d.alerts.length);
    state.renders.alerts += 1;
  }

  // ---------------------------------------------------------------- loading
  const q = (params) => {
    const u = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined));
    return u.toString() ? `?${u}` : "";
  };
  function missing(id, what, e) {  // 404: nothing stored (yet) for this day; other errors: the banner
    if (e.status === 404) placeholder(id, `${what}: ${e.message}`);
    else failed(what, e);
  }
  async function loadStrikes() {
    try {
      renderStrikes(await getJSON(`${API}/gex/strikes${q({ date: state.day, expiration: state.expiration })}`));
    } catch (e) {
      if (e.status === 404 && state.expiration !== "all") { state.expiration = "all"; return loadStrikes(); }
      missing("c-strikes", "GEX by strike", e);
    }
  }
  async function loadHeatmap() {
    try {
      renderHeatmap(await getJSON(`${API}/gex/heatmap${q({ date: state.day, expiration: state.expiration })}`));
    } catch (e) { missing("c-heatmap", "heatmap", e); }
  }
  async function loadProfile() {
    try { renderProfile(await getJSON(`${API}/gex/profile${q({ date: state.day })}`)); } catch (e) { missing("c-profile", "gamma profile", e); }
  }
  async function loadAlerts() {
    try { renderAlerts(await getJSON(`${API}/alerts${q({ date: state.day })}`)); } catch (e) { failed("alerts", e); }
  }
  const LIVE_FIELDS = "session_date,snapshot_ts,spot,net_gex,zero_gamma,call_wall,put_wall";
  async function loadIntraday() {  // a day may have live rows before its first stored snapshot
    try {
      state.intraday = (await getJSON(`${API}/levels/intraday${q({ date: state.day })}`)).rows;
    } catch (e) {
      if (e.status !== 404) throw e;
      state.intraday = [];
    }
    const live = await getJSON(`${API}/levels/intraday${q({ date: state.day, source: "live", fields: LIVE_FIELDS })}`);
    state.live = live.rows;
    state.lastLiveTs = live.rows.length ? live.rows[live.rows.length - 1].snapshot_ts : null;
    renderIntraday();
  }
  async function loadLiveTail() {  // the live rows since the last one drawn, appended
    const since = state.lastLiveTs;
    const more = await getJSON(`${API}/levels/intraday${q({ date: state.day, source: "live", fields: LIVE_FIELDS, since })}`);
    if (!more.rows.length) return;
    state.live = state.live.concat(more.rows);
    state.lastLiveTs = more.rows[more.rows.length - 1].snapshot_ts;
    renderIntraday();
  }
  function failed(what, e) {
    banner(`${what}: ${e.message}`);
  }
  async function loadDay() {  // every chart of state.day
    banner("");
    try { await loadIntraday(); } catch (e) { failed("intraday levels", e); }
    if (!state.follow && state.intraday.length) {  // a past day: its own last snapshot in the strip
      const last = state.intraday[state.intraday.length - 1];
      renderLevels({ source: "stored", feed: state.dayFeed, levels: last, convention: last.convention,
                     regime: last.net_gex > 0 ? "positive" : last.net_gex < 0 ? "negative" : "zero" });
    }
    await Promise.all([loadStrikes(), loadProfile(), loadHeatmap(), loadAlerts()]);
  }
  function reload() {  // one day load at a time; a request during a load runs once after it
    if (state.loading) { state.again = true; return state.loading; }
    state.loading = loadDay().finally(() => {
      state.loading = null;
      if (state.again) { state.again = false; reload(); }
    });
    return state.loading;
  }
  async function loadDates(select) {
    const d = await getJSON(`${API}/dates`);
    const days = d.dates.slice();
    if (d.live_date && !days.includes(d.live_date)) days.unshift(d.live_date);
    state.newest = days[0] || null;
    const sel = $("day");
    sel.replaceChildren(...days.map((day, i) => {
      const o = document.createElement("option");
      o.value = day;
      o.textContent = i === 0 ? `${day} (newest, follows)` : day;
      return o;
    }));
    if (select) state.day = select;
    if (!state.day || !days.includes(state.day)) state.day = state.newest;
    sel.value = state.day;
    state.follow = state.day === state.newest;
  }

  // ---------------------------------------------------------------- push
  function connect() {
    const es = new EventSource(`${API}/events`);
    const push = $("push");
    es.addEventListener("hello", () => { push.textContent = "● live push"; push.className = "push on"; });
    es.onerror = () => { push.textContent = "reconnecting…"; push.className = "push off"; };
    es.addEventListener("levels", async (ev) => {
      state.events += 1;
      const p = JSON.parse(ev.data);
      state.latest = p;
      if (state.follow) {
        renderLevels(p);
        if (p.source === "live" && p.levels.session_date === state.day) await loadLiveTail().catch((e) => failed("live levels", e));
        if (p.levels.session_date !== state.day) { await loadDates(p.levels.session_date); await reload(); }
      }
    });
    es.addEventListener("snapshot", async (ev) => {
      state.events += 1;
      const p = JSON.parse(ev.data);
      if (state.follow && p.session_date !== state.day) { await loadDates(p.session_date); return reload(); }
      if (p.session_date === state.day) return reload();
      return loadDates();
    });
    es.addEventListener("alerts", (ev) => {
      state.events += 1;
      if (JSON.parse(ev.data).session_date === state.day) loadAlerts();
    });
    es.addEventListener("status", (ev) => {
      const p = JSON.parse(ev.data);
      banner(p.ok ? "" : `store: ${p.error}`);
    });
  }

  async function start() {
    try {
      const meta = await getJSON("/api/v1/meta");
      state.meta = meta;
      $("underlyings").replaceChildren(...meta.underlyings.map((name) => {
        const a = document.createElement("a");
        a.href = `/${name.toLowerCase()}`;
        a.textContent = name;
        a.className = name === U ? "on" : "";
        return a;
      }));
      $("footer").textContent = `Convention: ${meta.convention}. Zero gamma: where the DTE-weighted sticky-strike profile `
        + `crosses zero nearest spot. Regime: ${meta.regime_rule}. Store: ${meta.store} (${meta.store_location}). `
        + "Times America/New_York.";
      await loadDates();
      if (!state.day) { banner(`No levels stored for ${U} yet: run \`make run\` (or \`zerogex run\`).`); connect(); return; }
      try { renderLevels(state.latest = await getJSON(`${API}/levels/latest`)); } catch (e) { failed("latest levels", e); }
      await reload();
    } catch (e) {
      banner(e.message);
    }
    connect();
    $("day").addEventListener("change", async (ev) => {
      state.day = ev.target.value;
      state.follow = state.day === state.newest;
      state.expiration = "all";
      if (state.follow && state.latest) renderLevels(state.latest);
      else state.dayFeed = null;
      await reload();
    });
  }
  start();
})();

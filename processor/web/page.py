"""The status page's HTML: one self-contained page (inline CSS and JS, no external assets; hosts may be offline).

It polls /els/status.json every few seconds and draws the flows table and sparklines in the browser; the
numbers themselves are computed by processor/web/status.py. Rows carry data-* attributes with the raw values so a
test (or a script) can read them without parsing formatted text.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Okta Workflows pipeline status</title>
<style>
  :root { --bg:#f5f6f8; --card:#fff; --ink:#1d2330; --muted:#6b7280; --line:#e5e7eb; --blue:#2563eb;
          --red:#dc2626; --redbg:#fef2f2; --amber:#b45309; --amberbg:#fffbeb; --green:#15803d; --greenbg:#f0fdf4; }
  * { box-sizing: border-box; }
  body { margin:0; background:var(--bg); color:var(--ink);
         font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
  header { display:flex; align-items:baseline; justify-content:space-between; padding:18px 28px 6px; }
  h1 { margin:0; font-size:20px; font-weight:650; letter-spacing:-.01em; }
  h2 { margin:0 0 10px; font-size:13px; font-weight:600; color:var(--muted); text-transform:uppercase;
       letter-spacing:.06em; }
  main { padding:4px 28px 28px; }
  .num { font-variant-numeric: tabular-nums; }
  #updated { color:var(--muted); font-size:13px; }
  #updated .dot { display:inline-block; width:8px; height:8px; border-radius:50%; background:var(--green);
                  margin-right:6px; vertical-align:middle; }
  #updated.stale .dot { background:var(--red); }
  #updated.stale { color:var(--red); }
  #scope { color:var(--muted); margin:0 0 14px; }
  #scope b { color:var(--ink); font-weight:600; }
  .note { background:var(--amberbg); color:var(--amber); border:1px solid #fde68a; border-radius:8px;
          padding:8px 12px; margin:0 0 14px; }
  .cards { display:grid; grid-template-columns:repeat(4, minmax(0,1fr)); gap:12px; margin-bottom:14px; }
  .card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 14px; }
  .card .label { color:var(--muted); font-size:12px; }
  .card .value { font-size:24px; font-weight:650; margin-top:2px; }
  .card .sub { color:var(--muted); font-size:12px; }
  .card.bad { border-color:#fecaca; background:var(--redbg); }
  .card.bad .value { color:var(--red); }
  .health { display:grid; grid-template-columns:2fr 1fr; gap:12px; margin-bottom:18px; }
  .kv { display:grid; grid-template-columns:repeat(4, minmax(0,1fr)); gap:4px 16px; }
  .kv div span { display:block; color:var(--muted); font-size:12px; }
  .kv div b { font-size:17px; font-weight:600; }
  .kv div.warn b { color:var(--amber); }
  .kv div.bad b { color:var(--red); }
  .badge { display:inline-block; padding:2px 9px; border-radius:999px; font-size:12px; font-weight:600; }
  .badge.ok { background:var(--greenbg); color:var(--green); }
  .badge.warn { background:var(--amberbg); color:var(--amber); }
  .badge.bad { background:var(--redbg); color:var(--red); }
  .badge.neutral { background:#eef2ff; color:#4338ca; }
  table { width:100%; border-collapse:separate; border-spacing:0; background:var(--card);
          border:1px solid var(--line); border-radius:10px; overflow:hidden; }
  th { text-align:left; font-size:12px; font-weight:600; color:var(--muted); background:#fafafa;
       padding:9px 12px; border-bottom:1px solid var(--line); white-space:nowrap; }
  th.r, td.r { text-align:right; }
  td { padding:8px 12px; border-bottom:1px solid var(--line); vertical-align:middle; }
  tr:last-child td { border-bottom:none; }
  tr.flow td:first-child { border-left:4px solid transparent; }
  tr.flow.failing td:first-child { border-left-color:var(--red); }
  tr.flow.failing { background:#fffafa; }
  .fname { font-weight:600; max-width:380px; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
  .fid { color:var(--muted); font-size:12px; }
  .rate { font-weight:650; }
  .rate.bad { color:var(--red); }
  .rate.warn { color:var(--amber); }
  .rate.ok { color:var(--green); }
  .rate.none { color:var(--muted); font-weight:400; }
  .fail { color:var(--red); font-weight:600; }
  .zero { color:var(--muted); }
  svg.spark { display:block; }
  #empty { background:var(--card); border:1px dashed #cbd5e1; border-radius:10px; padding:28px; text-align:center;
           color:var(--muted); font-size:15px; }
  #empty b { color:var(--ink); }
  footer { color:var(--muted); font-size:12px; margin-top:12px; }
</style>
</head>
<body>
<header>
  <h1>Okta Workflows &middot; pipeline status</h1>
  <div id="updated"><span class="dot"></span><span id="updated-text">loading&hellip;</span></div>
</header>
<main>
  <p id="scope">Waiting for the worker&hellip;</p>
  <div id="partial-note" class="note" hidden></div>
  <section class="cards">
    <div class="card" id="card-flows"><div class="label">Flows</div><div class="value num" id="v-flows">&ndash;</div>
      <div class="sub">with events in the windows shown</div></div>
    <div class="card" id="card-failing"><div class="label">Failing flows</div>
      <div class="value num" id="v-failing">&ndash;</div><div class="sub">at least one failed execution</div></div>
    <div class="card"><div class="label">Events</div><div class="value num" id="v-events">&ndash;</div>
      <div class="sub" id="v-span">&nbsp;</div></div>
    <div class="card" id="card-failures"><div class="label">Failures</div>
      <div class="value num" id="v-failures">&ndash;</div><div class="sub">FLOW_FAIL events</div></div>
  </section>
  <section class="health">
    <div class="card"><h2>Pipeline (windows held)</h2>
      <div class="kv">
        <div><span>events in</span><b class="num" id="p-events_in">&ndash;</b></div>
        <div><span>duplicates removed</span><b class="num" id="p-duplicates">&ndash;</b></div>
        <div id="k-late"><span>late (not counted)</span><b class="num" id="p-late_events">&ndash;</b></div>
        <div id="k-dead"><span>dead letters</span><b class="num" id="p-deadletters">&ndash;</b></div>
      </div></div>
    <div class="card"><h2>Datadog sink <span id="sink-state" class="badge neutral">&ndash;</span></h2>
      <div class="kv" style="grid-template-columns:repeat(3, minmax(0,1fr))">
        <div><span>series sent</span><b class="num" id="s-series_sent">&ndash;</b></div>
        <div><span>logs sent</span><b class="num" id="s-logs_sent">&ndash;</b></div>
        <div id="k-retries"><span>retries</span><b class="num" id="s-sink_retries">&ndash;</b></div>
      </div></div>
  </section>
  <h2>Flows <span style="text-transform:none;letter-spacing:0;font-weight:400">&mdash; failing first, then by
    volume</span></h2>
  <div id="empty" hidden></div>
  <table id="flows" hidden>
    <thead><tr><th>Flow</th><th class="r">Events</th><th>Events per window</th><th class="r">Failures</th>
      <th class="r">Error rate</th><th>Error rate per window</th><th class="r">p95 duration</th></tr></thead>
    <tbody id="flow-rows"></tbody>
  </table>
  <footer id="foot"></footer>
</main>
<script>
"use strict";
const POLL_MS = 3000;
const $ = (id) => document.getElementById(id);
const fmt = (n) => (n === null || n === undefined) ? "\\u2013" : Math.round(n).toLocaleString("en-US");
const pct = (r) => (r === null || r === undefined) ? "\\u2013" : (r * 100).toFixed(1) + "%";
const hhmmss = (d) => d.toTimeString().slice(0, 8);
function dur(ms) {
  if (ms === null || ms === undefined) return "\\u2013";
  if (ms < 1000) return Math.round(ms) + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  return (ms / 60000).toFixed(1) + " min";
}
function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
}
const W = 132, H = 30, RED_AT = 0.05;  // error rates from 5% are red, lower non-zero ones amber
function sparkEvents(values, windows, size) {
  const n = values.length, max = Math.max(1, ...values), step = n > 1 ? W / (n - 1) : W;
  const pts = values.map((v, i) => [n > 1 ? i * step : W / 2, H - 2 - (v / max) * (H - 6)]);
  const line = pts.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ");
  const area = "0," + (H - 2) + " " + line + " " + (n > 1 ? W : W / 2 + 1).toFixed(1) + "," + (H - 2);
  const last = pts[pts.length - 1];
  const tip = values.map((v, i) => hhmmss(new Date(windows[i])) + "  " + v).join("\\n");
  return '<svg class="spark" width="' + W + '" height="' + H + '" viewBox="0 0 ' + W + " " + H + '" role="img">' +
    "<title>" + esc(tip) + "</title>" +
    '<polygon points="' + area + '" fill="#dbeafe"/>' +
    '<polyline points="' + line + '" fill="none" stroke="#2563eb" stroke-width="1.6" stroke-linejoin="round"/>' +
    '<circle cx="' + last[0].toFixed(1) + '" cy="' + last[1].toFixed(1) + '" r="2.2" fill="#2563eb"/></svg>';
}
function sparkRate(values, windows) {
  const n = values.length, gap = 1.5, bw = Math.max(1.5, (W - gap * (n - 1)) / n);
  const top = Math.max(0.1, ...values.filter((v) => v !== null));
  let bars = "";
  values.forEach((v, i) => {
    const x = (i * (bw + gap)).toFixed(1);
    if (v === null) {
      bars += '<rect x="' + x + '" y="' + (H - 3) + '" width="' + bw.toFixed(1) + '" height="1" fill="#e5e7eb"/>';
    } else {
      const h = Math.max(1.5, (v / top) * (H - 4));
      bars += '<rect x="' + x + '" y="' + (H - 2 - h).toFixed(1) + '" width="' + bw.toFixed(1) + '" height="' +
        h.toFixed(1) + '" rx="1" fill="' + (v >= RED_AT ? "#dc2626" : v > 0 ? "#f59e0b" : "#86efac") + '"/>';
    }
  });
  const tip = values.map((v, i) => hhmmss(new Date(windows[i])) + "  " + pct(v)).join("\\n");
  return '<svg class="spark" width="' + W + '" height="' + H + '" viewBox="0 0 ' + W + " " + H + '" role="img">' +
    "<title>" + esc(tip) + "</title>" + '<line x1="0" x2="' + W + '" y1="' + (H - 1.5) + '" y2="' + (H - 1.5) +
    '" stroke="#e5e7eb"/>' + bars + "</svg>";
}
function row(f, d) {
  const cls = "flow" + (f.failing ? " failing" : "");
  const r = f.error_rate, rateCls = r === null ? "none" : r >= RED_AT ? "bad" : r > 0 ? "warn" : "ok";
  return '<tr class="' + cls + '" data-flow-id="' + esc(f.flow_id) + '" data-flow-name="' + esc(f.flow_name) +
    '" data-events="' + f.events + '" data-failures="' + f.failures + '" data-error-rate="' +
    (f.error_rate === null ? "" : String(f.error_rate)) + '" data-p95-ms="' + (f.p95_ms === null ? "" : f.p95_ms) + '">' +
    '<td><div class="fname" title="' + esc(f.flow_name) + '">' + esc(f.flow_name) + '</div><div class="fid">' + esc(f.flow_id) + "</div></td>" +
    '<td class="r num">' + fmt(f.events) + "</td>" +
    "<td>" + sparkEvents(f.series.events, d.windows) + "</td>" +
    '<td class="r num ' + (f.failures > 0 ? "fail" : "zero") + '">' + fmt(f.failures) + "</td>" +
    '<td class="r num"><span class="rate ' + rateCls + '">' + pct(f.error_rate) + "</span></td>" +
    "<td>" + sparkRate(f.series.error_rate, d.windows) + "</td>" +
    '<td class="r num">' + dur(f.p95_ms) + "</td></tr>";
}
function render(d) {
  const parts = d.partitions.length ? d.partitions.join(", ") : "none yet";
  const span = d.windows.length ? d.windows.length + " window" + (d.windows.length > 1 ? "s" : "") + " of " +
    d.window_seconds + " s, " + hhmmss(new Date(d.windows[0])) + "\\u2013" +
    hhmmss(new Date(d.windows[d.windows.length - 1] + d.window_seconds * 1000)) : "no windows yet";
  $("scope").innerHTML = "This worker owns raw partitions <b>" + esc(parts) + "</b> of <b>" +
    d.partition_count + "</b> &middot; " + esc(span);
  const note = $("partial-note");
  if (d.partitions.length < d.partition_count) {
    note.hidden = false;
    note.textContent = "Partial view: this worker shows only the flows of its own partitions. " +
      "Other workers hold the rest; Datadog has the merged values.";
  } else { note.hidden = true; }
  $("v-flows").textContent = fmt(d.totals.flows);
  $("v-failing").textContent = fmt(d.totals.failing);
  $("card-failing").classList.toggle("bad", d.totals.failing > 0);
  $("v-events").textContent = fmt(d.totals.events);
  $("v-failures").textContent = fmt(d.totals.failures);
  $("card-failures").classList.toggle("bad", d.totals.failures > 0);
  $("v-span").textContent = d.windows.length ? "last " + dur(d.windows.length * d.window_seconds * 1000) : "\\u00a0";
  for (const k of ["events_in", "duplicates", "late_events", "deadletters"]) $("p-" + k).textContent = fmt(d.pipeline[k]);
  $("k-late").className = d.pipeline.late_events > 0 ? "warn" : "";
  $("k-dead").className = d.pipeline.deadletters > 0 ? "bad" : "";
  const s = d.sink, badge = $("sink-state");
  badge.textContent = s.state;
  badge.className = "badge " + ({"delivering": "ok", "retrying": "bad", "dry run": "neutral"}[s.state] || "warn");
  for (const k of ["series_sent", "logs_sent", "sink_retries"]) $("s-" + k).textContent = fmt(s[k]);
  $("k-retries").className = s.state === "retrying" ? "bad" : "";
  const empty = $("empty"), table = $("flows");
  if (!d.has_data) {
    empty.hidden = false; table.hidden = true;
    empty.innerHTML = d.partitions.length
      ? "<b>No data yet on this worker.</b><br>Flows appear here once events of its partitions are processed."
      : "<b>No data yet on this worker.</b><br>It owns no partitions yet (starting, or waiting for a rebalance).";
  } else {
    empty.hidden = true; table.hidden = false;
    $("flow-rows").innerHTML = d.flows.map((f) => row(f, d)).join("");
  }
  const ticks = Object.values(d.clocks).map((c) => c.now_ms).filter((t) => t);
  $("foot").textContent = ticks.length ? "Stream clock (last tick processed): " + hhmmss(new Date(Math.min(...ticks))) +
    " \\u00b7 worker records processed: " + fmt(d.worker.records) : "No tick processed yet.";
}
let lastOk = null;
async function poll() {
  try {
    const r = await fetch("/els/status.json", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    const d = await r.json();
    render(d);
    lastOk = new Date();
    $("updated").className = "";
    $("updated-text").textContent = "updated " + hhmmss(lastOk);
  } catch (e) {
    $("updated").className = "stale";
    $("updated-text").textContent = "worker not answering (" + e.message + ")" +
      (lastOk ? ", last updated " + hhmmss(lastOk) : "");
  }
}
poll();
setInterval(poll, POLL_MS);
</script>
</body>
</html>
"""

/**
 * The dashboard: one page fed by /v1/dashboard/events (SSE). `__INITIAL__`
 * is replaced by the state at the time the page was served (JSON, or `null` when the data
 * needs a token the request did not carry), so the first paint already shows the fleet.
 * Each pool's last hour is plotted (from /v1/dashboard/history, then the newest point of
 * every event) with uPlot, which the router serves itself (/dashboard/uplot.min.js).
 * window.__warmpoolPlots holds each plot's data (columns: time s, target, ready, booting,
 * claimed, waiting, claims/min, hit ratio %).
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Warmpool</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/dashboard/uplot.min.css"><script src="/dashboard/uplot.min.js"></script>
<style>
  :root { --bg:#0f172a; --panel:#1e293b; --text:#e2e8f0; --muted:#94a3b8; --ready:#22c55e; --booting:#f59e0b; --warming:#eab308; --claimed:#3b82f6; --failed:#ef4444; --draining:#a855f7; --pulling:#38bdf8; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--text); }
  header { display:flex; gap:24px; align-items:baseline; padding:16px 24px; border-bottom:1px solid #334155; }
  h1 { margin:0; font-size:20px; } h2 { font-size:15px; margin:0 0 8px; color:var(--muted); font-weight:600; }
  .kpi { font-size:13px; color:var(--muted); } .kpi b { font-size:20px; color:var(--text); margin-right:4px; }
  main { display:grid; grid-template-columns: 1fr 1fr; gap:16px; padding:16px 24px; }
  section { background:var(--panel); border-radius:8px; padding:12px 16px; }
  section.wide { grid-column: 1 / -1; }
  table { width:100%; border-collapse:collapse; } th, td { text-align:left; padding:4px 8px; border-bottom:1px solid #334155; }
  th { color:var(--muted); font-weight:500; font-size:12px; }
  .chips { display:flex; flex-wrap:wrap; gap:6px; margin:6px 0 12px; }
  .chip { min-width:120px; white-space:nowrap; font-family:ui-monospace, monospace; padding:6px 8px; border-radius:6px; font-size:12px; color:#0f172a; position:relative; overflow:hidden; }
  .chip .bar { position:absolute; left:0; bottom:0; height:3px; background:#0f172a55; }
  .ready { background:var(--ready); } .booting { background:var(--booting); } .warming { background:var(--warming); } .claimed { background:var(--claimed); color:white; }
  .pulling { background:var(--pulling); }
  .failed { background:var(--failed); color:white; } .draining { background:var(--draining); color:white; }
  .legend span { display:inline-block; padding:1px 8px; border-radius:10px; margin-right:6px; font-size:12px; }
  .pool { color:var(--muted); font-size:12px; margin:2px 0 6px; } .plot { background:#fff; border-radius:6px; margin:6px 0 12px; color:#0f172a; }
  #conn { margin-left:auto; font-size:12px; } .live { color:var(--ready); } .down { color:var(--failed); }
</style></head>
<body>
<header><h1>Warmpool</h1>
  <span class="kpi"><b id="k-ready">-</b>ready</span><span class="kpi"><b id="k-booting">-</b>booting</span>
  <span class="kpi"><b id="k-sessions">-</b>sessions</span><span class="kpi"><b id="k-rate">-</b>claims/min</span>
  <span id="conn" class="down">connecting…</span></header>
<main>
  <section class="wide"><h2>Pools over the last hour</h2><div id="plots"></div></section>
  <section class="wide"><h2>Services</h2><div class="legend"><span class="pulling">pulling</span><span class="ready">ready</span><span class="booting">booting</span><span class="warming">warming</span><span class="claimed">claimed</span><span class="failed">failed</span><span class="draining">draining</span></div><div id="services"></div></section>
  <section><h2>Hosts</h2><table id="hosts"></table></section>
  <section><h2>Sessions</h2><table id="sessions"></table></section>
</main>
<script>
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&':'&amp;', '<':'&lt;', '>':'&gt;', '"':'&quot;', "'":'&#39;' }[c]));
// Durations as people read them: 4.2s, 45s, 9m59s, 7h59m.
const secs = (ms) => {
  if (ms < 10000) return (ms / 1000).toFixed(1) + 's';
  const t = Math.round(ms / 1000);
  if (t < 60) return t + 's';
  if (t < 3600) return Math.floor(t / 60) + 'm' + String(t % 60).padStart(2, '0') + 's';
  return Math.floor(t / 3600) + 'h' + String(Math.floor(t / 60) % 60).padStart(2, '0') + 'm';
};
const STAGES = [['pullMs', 'pull'], ['createMs', 'create'], ['bootMs', 'boot'], ['warmupMs', 'warm-up']];
const stageText = (st) => st ? STAGES.filter(([k]) => typeof st[k] === 'number').map(([k, n]) => ', ' + n + ' ' + secs(st[k])).join('') : '';
function render(s) {
  const sum = (k) => s.status.services.reduce((a, v) => a + v[k], 0);
  $('k-ready').textContent = sum('ready'); $('k-booting').textContent = sum('booting');
  $('k-sessions').textContent = s.sessions.length; $('k-rate').textContent = s.claimsPerMin;
  $('services').innerHTML = s.status.services.map((v) => {
    const chips = s.instances.filter((i) => i.service === v.name).map((i) => {
      const typical = v.typicalStages && v.typicalStages.startMs;
      const p = i.state === 'pulling' ? (i.pullPercent ?? null) : (i.state === 'booting' || i.state === 'warming') && typical ? Math.min(99, Math.round(100 * i.ageMs / typical)) : null;
      return '<div class="chip ' + esc(i.state) + '" data-state="' + esc(i.state) + '" title="' + esc(i.id) + ' on ' + esc(i.host) + stageText(i.stages) + '">' + esc(i.id) + '<br>' + esc(i.state) + (p !== null ? ' ' + p + '%' : '') + (p !== null ? '<div class="bar" style="width:' + p + '%"></div>' : '') + '</div>';
    }).join('');
    const p = v.pool, z = p.sizing, c = v.cost;
    const why = p.static ? 'static warm ' + p.size : esc(z.reason) + ' · ' + (z.ratePerSec * 60).toFixed(2) + ' requests/min, boot ' + secs(z.bootMs) + (z.bootMeasured ? '' : ' (none measured yet: assumed)') + (z.next ? ' · next: ' + z.next.size + ' in ' + secs(Math.max(0, z.next.at - s.at)) : '');
    const eta = s.etaSec[v.name] === undefined ? '' : s.etaMeasured[v.name]
      ? ' · first waiter served in ~' + secs(s.etaSec[v.name] * 1000)
      : ' · first waiter served within ' + secs(s.etaSec[v.name] * 1000) + ' (its boot timeout: no start measured yet)';
    const pool = '<div class="pool" data-pool="' + esc(v.name) + '">pool: ' + why + ' · slots ' + p.slots + ' · waiting <b class="n-waiting">' + v.waiting + '</b>' + eta + ' · hit ratio ' + (c.hitRatio === null ? '-' : (c.hitRatio * 100).toFixed(1) + '%') + ' of ' + c.sessions + ' · idle ' + c.now.idle + ' / busy ' + c.now.busy + '</div>';
    return '<div data-service="' + esc(v.name) + '"><b>' + esc(v.name) + '</b> target ' + v.target + ' · ready <b class="n-ready">' + v.ready + '</b> · booting ' + v.booting + ' · claimed <b class="n-claimed">' + v.claimed + '</b> · failed ' + v.failed + (v.typicalStages && v.typicalStages.startMs ? ' · typical start ' + secs(v.typicalStages.startMs) + ' <span class="stages">(' + stageText(v.typicalStages).slice(2) + ')</span>' : v.typicalBootMs ? ' · typical boot ' + secs(v.typicalBootMs) : '') + pool + '<div class="chips">' + chips + '</div></div>';
  }).join('') || '<i>no services: run warmpool apply -f services.yaml</i>';
  for (const [name, point] of Object.entries(s.points)) plotPoint(name, point);
  $('hosts').innerHTML = '<tr><th>host</th><th>address</th><th>instances</th><th>state</th></tr>' + s.status.hosts.map((h) => '<tr><td>' + esc(h.id) + '</td><td>' + esc(h.address) + '</td><td>' + h.instances + '/' + h.capacity + '</td><td>' + (h.draining ? 'draining' : 'active') + '</td></tr>').join('');
  $('sessions').innerHTML = '<tr><th>session</th><th>service</th><th>instance</th><th>host</th><th>age</th></tr>' + s.sessions.map((x) => '<tr><td>' + esc(x.id) + '</td><td>' + esc(x.service) + '</td><td>' + esc(x.instance) + '</td><td>' + esc(x.host) + '</td><td>' + secs(x.ageMs) + '</td></tr>').join('');
}
const plots = {};
window.__warmpoolPlots = {};
const COLUMNS = ['target', 'ready', 'booting', 'claimed', 'waiting', 'claimRate', 'hitRatio'];
const COLORS = ['#0f172a', '#16a34a', '#d97706', '#2563eb', '#dc2626', '#7c3aed', '#0891b2'];
function plotFor(name) {
  if (plots[name]) return plots[name];
  const box = document.createElement('div');
  box.className = 'plot'; box.dataset.plot = name;
  $('plots').appendChild(box);
  const data = [[], [], [], [], [], [], [], []];
  const series = [{}].concat(COLUMNS.map((c, i) => ({ label: c === 'claimRate' ? 'claims/min' : c === 'hitRatio' ? 'hit ratio %' : c, stroke: COLORS[i], width: 2, scale: c === 'hitRatio' ? '%' : 'n' })));
  const plot = typeof uPlot === 'function' ? new uPlot({ title: name + ' (last hour)', width: Math.max(400, $('plots').clientWidth - 8), height: 220, series,
    scales: { '%': { range: [0, 100] } }, axes: [{}, { scale: 'n' }, { scale: '%', side: 1, grid: { show: false } }] }, data, box) : null;
  window.__warmpoolPlots[name] = data;
  return (plots[name] = { plot, data });
}
const raw = {};
/** Adds points (any order, any age) to a service's plot: kept sorted by time, one hour, one per instant. */
function plotPoints(name, points) {
  const { plot, data } = plotFor(name);
  const byT = raw[name] || (raw[name] = new Map());
  for (const p of points) byT.set(p.t, p);
  const sorted = [...byT.values()].sort((x, y) => x.t - y.t);
  const newest = sorted.length ? sorted[sorted.length - 1].t : 0;
  for (const p of sorted) if (p.t < newest - 3600000) byT.delete(p.t);
  const kept = sorted.filter((p) => p.t >= newest - 3600000);
  data[0].length = 0; COLUMNS.forEach((_, i) => { data[i + 1].length = 0; });
  for (const p of kept) {
    data[0].push(p.t / 1000);
    COLUMNS.forEach((c, i) => data[i + 1].push(c === 'hitRatio' ? (p.hitRatio === null ? null : p.hitRatio * 100) : p[c]));
  }
  if (plot) plot.setData(data);
}
function plotPoint(name, p) { plotPoints(name, [p]); }
async function loadHistory() {
  const r = await fetch('/v1/dashboard/history', token ? { headers: { authorization: 'Bearer ' + token } } : {});
  if (!r.ok) return;
  const h = await r.json();
  for (const [name, points] of Object.entries(h.services)) plotPoints(name, points);
}
const initial = __INITIAL__;
if (initial) { render(initial); $('conn').textContent = 'snapshot, connecting…'; }
const token = new URLSearchParams(location.search).get('token');
function connect() {
  const es = new EventSource('/v1/dashboard/events' + (token ? '?token=' + encodeURIComponent(token) : ''));
  es.onopen = () => { $('conn').textContent = 'live'; $('conn').className = 'live'; };
  es.onmessage = (e) => render(JSON.parse(e.data));
  es.onerror = () => { $('conn').textContent = 'reconnecting…'; $('conn').className = 'down'; };
}
loadHistory().finally(connect);
</script></body></html>
`;

/**
 * The dashboard: one self-contained page fed by /v1/dashboard/events (SSE). `__INITIAL__`
 * is replaced by the state at the time the page was served (JSON, or `null` when the data
 * needs a token the request did not carry), so the first paint already shows the fleet.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Warmpool</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
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
  #conn { margin-left:auto; font-size:12px; } .live { color:var(--ready); } .down { color:var(--failed); }
</style></head>
<body>
<header><h1>Warmpool</h1>
  <span class="kpi"><b id="k-ready">-</b>ready</span><span class="kpi"><b id="k-booting">-</b>booting</span>
  <span class="kpi"><b id="k-sessions">-</b>sessions</span><span class="kpi"><b id="k-rate">-</b>claims/min</span>
  <span id="conn" class="down">connecting…</span></header>
<main>
  <section class="wide"><h2>Services</h2><div class="legend"><span class="pulling">pulling</span><span class="ready">ready</span><span class="booting">booting</span><span class="warming">warming</span><span class="claimed">claimed</span><span class="failed">failed</span><span class="draining">draining</span></div><div id="services"></div></section>
  <section><h2>Hosts</h2><table id="hosts"></table></section>
  <section><h2>Sessions</h2><table id="sessions"></table></section>
</main>
<script>
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&':'&amp;', '<':'&lt;', '>':'&gt;', '"':'&quot;', "'":'&#39;' }[c]));
const secs = (ms) => (ms / 1000).toFixed(ms < 10000 ? 1 : 0) + 's';
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
    return '<div data-service="' + esc(v.name) + '"><b>' + esc(v.name) + '</b> target ' + v.target + ' · ready <b class="n-ready">' + v.ready + '</b> · booting ' + v.booting + ' · claimed <b class="n-claimed">' + v.claimed + '</b> · failed ' + v.failed + (v.typicalStages && v.typicalStages.startMs ? ' · typical start ' + secs(v.typicalStages.startMs) + ' <span class="stages">(' + stageText(v.typicalStages).slice(2) + ')</span>' : v.typicalBootMs ? ' · typical boot ' + secs(v.typicalBootMs) : '') + '<div class="chips">' + chips + '</div></div>';
  }).join('') || '<i>no services: run warmpool apply -f services.yaml</i>';
  $('hosts').innerHTML = '<tr><th>host</th><th>address</th><th>instances</th><th>state</th></tr>' + s.status.hosts.map((h) => '<tr><td>' + esc(h.id) + '</td><td>' + esc(h.address) + '</td><td>' + h.instances + '/' + h.capacity + '</td><td>' + (h.draining ? 'draining' : 'active') + '</td></tr>').join('');
  $('sessions').innerHTML = '<tr><th>session</th><th>service</th><th>instance</th><th>host</th><th>age</th></tr>' + s.sessions.map((x) => '<tr><td>' + esc(x.id) + '</td><td>' + esc(x.service) + '</td><td>' + esc(x.instance) + '</td><td>' + esc(x.host) + '</td><td>' + secs(x.ageMs) + '</td></tr>').join('');
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
connect();
</script></body></html>
`;

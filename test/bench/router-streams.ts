import http from 'node:http';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Registry, newSessionId, parseServiceSpec, type HostSession } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { eventually, startEtcd, freePort } from '../src/index.js';
import { emit, load, round, summarize } from './stats.js';
import { cpuMs, spawnListening, type Child } from './router-servers.js';
import { startRouterProcess } from './router-proxy.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const STREAM_MS = 15_000;
/** Chunks of the first seconds are left out: the streams are still being opened. */
const WARMUP_MS = 4_000;

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Opens `paths.length` streams at once; resolves with each chunk's delay (receive - send, ms). */
async function streams(port: number, paths: string[]): Promise<{ delays: number[]; chunks: number; failed: number }> {
  const delays: number[] = [];
  let chunks = 0;
  let failed = 0;
  const start = Date.now();
  await Promise.all(paths.map((p) => new Promise<void>((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      if (res.statusCode !== 200) { failed++; res.resume(); res.on('end', resolve); return; }
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        const now = Date.now();
        buf += d;
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(6, i);
          buf = buf.slice(i + 2);
          const sent = Number(ev);
          if (!Number.isFinite(sent)) continue;
          chunks++;
          if (sent - start >= WARMUP_MS) delays.push(now - sent);
        }
      });
      res.on('end', resolve);
      res.on('error', () => { failed++; resolve(); });
    });
    req.on('error', () => { failed++; resolve(); });
  })));
  return { delays, chunks, failed };
}

/**
 * router-streams: 1,000 / 2,000 / 5,000 concurrent SSE streams through one router process,
 * each an established session whose instance emits a small event every 200 ms; the same
 * number of streams read directly from the upstream in the same run is the baseline. Per
 * size: router RSS per stream, router CPU per chunk, added delay per chunk p50/p99 (through
 * the router minus direct). Args: [sizes (1000,2000,5000)]. Env: STREAMS_ROUTER_NODE_ARGS
 * (Node/V8 flags for the router process, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`).
 */
export async function run(args: string[]): Promise<void> {
  const sizes = (args[0] ?? '1000,2000,5000').split(',').map(Number).filter((n) => n > 0);
  const etcd = await startEtcd();
  const store = new EtcdKvStore({ endpoints: etcd.endpoints });
  const prefix = `/streams-${randomBytes(3).toString('hex')}/`;
  const reg = new Registry(store, { prefix });
  const children: Child[] = [];
  let host: HostSession | undefined;
  try {
    const upstream = await spawnListening(path.join(here, 'sse-upstream.js'), [String(await freePort())]);
    children.push(upstream);
    const spec = parseServiceSpec({ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 0, session: { idleTimeoutSec: 600, maxLifetimeSec: 3600 } });
    if (!spec.ok) throw new Error('bad spec');
    await reg.putService(spec.spec);
    await reg.clusterSecret();
    const total = sizes.reduce((a, b) => a + b, 0);
    host = await reg.openHost({ id: 'streams', address: '127.0.0.1', capacity: { instances: total, memoryMb: 0 }, labels: {}, draining: false, startedAt: Date.now(), agentVersion: 'bench' }, 60);
    const h = host;
    await load(async (i) => {
      await h.putInstance({ id: `s${i}`, service: 'chatbot', host: 'streams', state: 'ready', address: `127.0.0.1:${upstream.port}`, containerId: '', slot: null, createdAt: Date.now(), readyAt: Date.now(), bootMs: 1 });
    }, total, 64);
    const cache = await reg.cache();
    await eventually(() => cache.ready.count('chatbot') === total, { timeoutMs: 120_000, what: 'instances registered' });
    // STREAMS_ROUTER_NODE_ARGS: Node/V8 flags for the router (e.g. --cpu-prof to profile it).
    const nodeArgs = (process.env.STREAMS_ROUTER_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const router = await startRouterProcess(etcd.endpoints, prefix, {}, 120_000, nodeArgs);
    children.push(router);
    const rows: Record<string, number>[] = [];
    for (const n of sizes) {
      const ids: string[] = [];
      await load(async () => {
        const r = await reg.claim({ service: 'chatbot', sessionId: newSessionId() });
        if (!r.ok) throw new Error(r.reason);
        ids.push(r.session.id);
      }, n, 32);
      const q = `?ms=${STREAM_MS}`;
      const direct = await streams(upstream.port, ids.map(() => `/sse${q}`));
      await new Promise((r) => setTimeout(r, 1000));
      const rss0 = rssMb(router.proc.pid!);
      const cpu0 = cpuMs(router.proc.pid!);
      let rssPeak = rss0;
      const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, rssMb(router.proc.pid!)); }, 500);
      const routed = await streams(router.port, ids.map((id) => `/v1/sessions/${id}/proxy/sse${q}`));
      clearInterval(sampler);
      const cpu = cpuMs(router.proc.pid!) - cpu0;
      const d = summarize(direct.delays);
      const r = summarize(routed.delays);
      const row = {
        streams: n, routedFailed: routed.failed, directFailed: direct.failed, chunks: routed.chunks,
        directP50Ms: d.p50Ms, directP99Ms: d.p99Ms, routedP50Ms: r.p50Ms, routedP99Ms: r.p99Ms,
        addedP50Ms: round(r.p50Ms - d.p50Ms), addedP99Ms: round(r.p99Ms - d.p99Ms),
        routerRssMb: round(rssPeak, 1), rssPerStreamKb: round(((rssPeak - rss0) * 1024) / n, 1),
        cpuPerChunkUs: round((cpu * 1000) / Math.max(1, routed.chunks), 1),
      };
      rows.push(row);
      emit({ bench: 'router-streams', ...row });
    }
    const last = rows[rows.length - 1]!;
    emit({
      bench: 'router-streams', summary: true, sizes: rows.map((x) => x.streams), streams: last.streams,
      addedP50Ms: last.addedP50Ms, addedP99Ms: last.addedP99Ms, routerRssMb: last.routerRssMb,
      rssPerStreamKb: last.rssPerStreamKb, cpuPerChunkUs: last.cpuPerChunkUs,
      baselineDirectP99Ms: last.directP99Ms, routedP99Ms: last.routedP99Ms,
      addedP99BySize: rows.map((x) => x.addedP99Ms),
    });
  } finally {
    for (const c of children.reverse()) await c.stop();
    await host?.close({ revoke: true }).catch(() => undefined);
    await reg.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    await etcd.stop();
  }
}

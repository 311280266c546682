import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Registry, newSessionId, parseServiceSpec, type HostSession } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { eventually, startEtcd, freePort } from '../src/index.js';
import { emit, load, round, summarize } from './stats.js';
import { cpuMs, rssMb, spawnListening, type Child } from './router-servers.js';
import { startRouterProcess } from './router-proxy.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The steady window: every stream open, chunk delays and router CPU measured. */
const STEADY_MS = 10_000;
/** Between the last stream opening and the steady window. */
const SETTLE_MS = 2_000;
/** After the window: chunks sent within it that arrive late still count. */
const TAIL_MS = 1_000;
/** Streams not open by then count as failed. */
const OPEN_LIMIT_MS = 120_000;
/** The upstream ends each stream after this long at the latest (the client closes them first). */
const UPSTREAM_STREAM_MS = 300_000;

/** Busy and total CPU time of the whole machine so far (jiffies, from /proc/stat). */
function machineCpu(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  // idle and iowait (fields 4 and 5 of the cpu line, proc(5))
  return { busy: total - f[3]! - f[4]!, total };
}

/**
 * Connection attempts the kernel dropped so far because a listening socket's accept queue
 * was full (TcpExt ListenOverflows in /proc/net/netstat; machine-wide).
 */
function listenOverflows(): number {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n');
  for (let i = 0; i + 1 < lines.length; i += 2) {
    if (!lines[i]!.startsWith('TcpExt:')) continue;
    const names = lines[i]!.split(/\s+/);
    const values = lines[i + 1]!.split(/\s+/);
    const at = names.indexOf('ListenOverflows');
    return at < 0 ? 0 : Number(values[at]);
  }
  return 0;
}

interface StreamRun {
  /** ms from the first request until every stream had its response headers (or failed). */
  openMs: number;
  /** Chunk delays (receive - send, ms) while streams were still opening. */
  openingDelays: number[];
  /** Chunk delays of chunks sent in the steady window, all streams open. */
  steadyDelays: number[];
  /** Streams refused, not open in time, or ended or broken before the window closed. */
  failed: number;
}

/**
 * Opens `paths.length` streams at once, waits until all are open (+ SETTLE_MS), then
 * measures for STEADY_MS (`window` is called at its start and end, for CPU and memory
 * samples) and closes them all. Chunk delays: receive time minus the send time the
 * upstream writes into each event.
 */
async function streams(port: number, paths: string[], window: (edge: 'start' | 'end') => void): Promise<StreamRun> {
  const openingDelays: number[] = [];
  const steadyDelays: number[] = [];
  let failed = 0;
  let opening = true;
  let steadyFrom = Infinity;
  let steadyTo = Infinity;
  let measuring = false;
  const sockets: net.Socket[] = [];
  const start = Date.now();
  let settled = 0;
  let allSettled!: () => void;
  const allOpen = new Promise<void>((r) => { allSettled = r; });
  const settle = (): void => { if (++settled === paths.length) allSettled(); };
  for (const p of paths) {
    let open = false;
    let broken = false;
    const fail = (): void => {
      if (broken) return;
      broken = true;
      // A stream that breaks before the window closes fails; closing them afterwards does not.
      if (!measuring && !opening && steadyTo !== Infinity) return;
      failed++;
      if (!open) settle();
    };
    // A raw socket per stream: the client is a load generator and should cost the machine
    // as little as it can (http.get's response stream and string decoding cost about as
    // much per event as the router's whole forwarding). It finds each event's
    // `data: <send time>` line whatever the chunk framing, so a router that merges or
    // splits chunks is measured the same.
    const socket = net.connect({ host: '127.0.0.1', port, noDelay: true }, () => {
      socket.write(`GET ${p} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n\r\n`);
    });
    socket.setEncoding('latin1');
    let buf = '';
    socket.on('data', (d: string) => {
      const now = Date.now();
      buf = buf.length === 0 ? d : buf + d;
      let at = 0;
      if (!open) {
        const headEnd = buf.indexOf('\r\n\r\n');
        if (headEnd < 0) return;
        if (!buf.startsWith('HTTP/1.1 200 ')) { fail(); socket.destroy(); return; }
        open = true;
        settle();
        at = headEnd + 4;
      }
      for (;;) {
        const i = buf.indexOf('data: ', at);
        if (i < 0) {
          // Keep what may be the start of the next `data: `.
          buf = buf.length - at > 5 ? buf.slice(buf.length - 5) : buf.slice(at);
          return;
        }
        const nl = buf.indexOf('\n', i + 6);
        if (nl < 0) { buf = buf.slice(i); return; }
        at = nl + 1;
        const sent = Number(buf.slice(i + 6, nl));
        if (!Number.isFinite(sent)) {
          // [DONE]: the upstream ended the stream.
          fail();
          continue;
        }
        if (opening) openingDelays.push(now - sent);
        else if (sent >= steadyFrom && sent < steadyTo) steadyDelays.push(now - sent);
      }
    });
    socket.on('close', fail);
    socket.on('error', fail);
    sockets.push(socket);
  }
  const limit = setTimeout(allSettled, OPEN_LIMIT_MS);
  await allOpen;
  clearTimeout(limit);
  const openMs = Date.now() - start;
  failed += paths.length - settled;
  opening = false;
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  measuring = true;
  steadyFrom = Date.now();
  window('start');
  await new Promise((r) => setTimeout(r, STEADY_MS));
  steadyTo = Date.now();
  window('end');
  await new Promise((r) => setTimeout(r, TAIL_MS));
  measuring = false;
  for (const socket of sockets) socket.destroy();
  return { openMs, openingDelays, steadyDelays, failed };
}

/**
 * router-streams: 1,000 / 2,000 / 5,000 concurrent SSE streams through one router process,
 * each an established session whose instance emits a small event every 200 ms; the same
 * number of streams read directly from the upstream in the same run is the baseline. Each
 * size opens all its streams at once, waits until every one is open, and measures a steady
 * window of STEADY_MS with all of them open: router RSS per stream, router CPU per chunk
 * (all, and its user-mode part), added delay per chunk p50/p99 (through the router minus
 * direct). The opening phase (all streams requested at once) is reported apart: how long
 * until all were open, the chunk delay p99 meanwhile, and the connection attempts the
 * kernel dropped on a full accept queue. Args: [sizes (1000,2000,5000)].
 * Env: STREAMS_ROUTER_NODE_ARGS (Node/V8 flags for the router process, e.g.
 * `--cpu-prof --cpu-prof-dir=/tmp/prof`).
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
      const q = `?ms=${UPSTREAM_STREAM_MS}`;
      const overflows0 = listenOverflows();
      const direct = await streams(upstream.port, ids.map(() => `/sse${q}`), () => undefined);
      const overflows1 = listenOverflows();
      await new Promise((r) => setTimeout(r, 2000));
      const pid = router.proc.pid!;
      const rssIdle = rssMb(pid);
      // The client (this process) and the upstream share the machine with the router.
      const cores = os.availableParallelism();
      const sample = (): { cpu: number; user: number; up: number; client: number; machine: { busy: number; total: number } } => {
        const usage = process.cpuUsage();
        return { cpu: cpuMs(pid), user: cpuMs(pid, 'user'), up: cpuMs(upstream.proc.pid!), client: (usage.user + usage.system) / 1000, machine: machineCpu() };
      };
      let first = sample();
      let last = first;
      let rssSteady = 0;
      const overflows2 = listenOverflows();
      const routed = await streams(router.port, ids.map((id) => `/v1/sessions/${id}/proxy/sse${q}`), (edge) => {
        if (edge === 'start') first = sample();
        else {
          last = sample();
          rssSteady = rssMb(pid);
        }
      });
      const cpu = last.cpu - first.cpu;
      const user = last.user - first.user;
      const up = last.up - first.up;
      const client = last.client - first.client;
      const machineBusy = ((last.machine.busy - first.machine.busy) / Math.max(1, last.machine.total - first.machine.total)) * cores;
      const d = summarize(direct.steadyDelays);
      const r = summarize(routed.steadyDelays);
      const chunks = routed.steadyDelays.length;
      const row = {
        streams: n, routedFailed: routed.failed, directFailed: direct.failed, steadyChunks: chunks,
        directP50Ms: d.p50Ms, directP99Ms: d.p99Ms, routedP50Ms: r.p50Ms, routedP99Ms: r.p99Ms,
        addedP50Ms: round(r.p50Ms - d.p50Ms), addedP99Ms: round(r.p99Ms - d.p99Ms),
        routerRssMb: round(rssSteady, 1), rssPerStreamKb: round(((rssSteady - rssIdle) * 1024) / n, 1),
        cpuPerChunkUs: round((cpu * 1000) / Math.max(1, chunks), 1),
        // The user-mode part: the router's JavaScript, Node and undici, without the kernel's socket work.
        userCpuPerChunkUs: round((user * 1000) / Math.max(1, chunks), 1),
        routerCoresBusy: round(cpu / STEADY_MS, 2),
        // The rest of the machine: if all its cores are busy, the delays measure the machine.
        upstreamCoresBusy: round(up / STEADY_MS, 2), clientCoresBusy: round(client / STEADY_MS, 2),
        machineCoresBusy: round(machineBusy, 2), machineCores: cores,
        // All streams requested at once: until every one is open, the router also sets them up.
        directOpenMs: direct.openMs, routedOpenMs: routed.openMs,
        // Connection attempts dropped on a full accept queue while the streams opened (retried by the client after 1 s, 3 s, ...).
        directListenOverflows: overflows1 - overflows0, routedListenOverflows: listenOverflows() - overflows2,
        directOpeningP99Ms: summarize(direct.openingDelays).p99Ms, routedOpeningP99Ms: summarize(routed.openingDelays).p99Ms,
      };
      rows.push(row);
      emit({ bench: 'router-streams', ...row });
    }
    const last = rows[rows.length - 1]!;
    emit({
      bench: 'router-streams', summary: true, sizes: rows.map((x) => x.streams), streams: last.streams,
      addedP50Ms: last.addedP50Ms, addedP99Ms: last.addedP99Ms, routerRssMb: last.routerRssMb,
      rssPerStreamKb: last.rssPerStreamKb, cpuPerChunkUs: last.cpuPerChunkUs, userCpuPerChunkUs: last.userCpuPerChunkUs,
      routerCoresBusy: last.routerCoresBusy, machineCoresBusy: last.machineCoresBusy, machineCores: last.machineCores, routedOpenMs: last.routedOpenMs, routedOpeningP99Ms: last.routedOpeningP99Ms, routedListenOverflows: last.routedListenOverflows,
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

// Helpers of the router and proxy benchmarks: the servers under test, each in a child
// process of its own (so no two share an event loop), wrk as the load generator, nginx from
// Debian as the reference reverse proxy. Run as `node router-servers.js KIND PORT [TARGET]`
// a child prints "listening PORT" when ready.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { eventually, freePort } from '../src/index.js';

const thisFile = fileURLToPath(import.meta.url);

export type ServerKind = 'upstream' | 'bare-proxy' | 'node-http-proxy-3' | 'fastify-http-proxy-3' | 'fastify-reply-from';

const SMALL = JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' } }] });

/** The upstream: small JSON on any path, `?bytes=N` for a larger body, keep-alive like a model server. */
function startUpstream(port: number): void {
  const big = new Map<number, Buffer>();
  const server = http.createServer((req, res) => {
    const q = req.url?.indexOf('?bytes=') ?? -1;
    if (q >= 0) {
      const n = Math.min(Number(req.url!.slice(q + 7)) || 0, 16 * 1024 * 1024);
      let b = big.get(n);
      if (!b) big.set(n, (b = Buffer.alloc(n, 97)));
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': b.length, 'x-instance-id': 'bench' });
      res.end(b);
    } else {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(SMALL), 'x-instance-id': 'bench' });
      res.end(SMALL);
    }
    req.resume();
  });
  server.keepAliveTimeout = 65_000;
  server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
}

/** The baseline: the least a Node reverse proxy can do (keep-alive agent, pipe both ways). */
function startBareProxy(port: number, target: string): void {
  const [host, p] = target.split(':') as [string, string];
  const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 64 });
  const server = http.createServer((req, res) => {
    const up = http.request({ host, port: Number(p), method: req.method, path: req.url, headers: req.headers, agent }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => { if (!res.headersSent) res.writeHead(502); res.end(); });
    req.pipe(up);
  });
  server.keepAliveTimeout = 65_000;
  server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
}

/** http-proxy-3 on a plain Node server: how the router's pre-routing hot path uses it. */
async function startNodeHttpProxy3(port: number, target: string): Promise<void> {
  const { createProxyServer } = await import('http-proxy-3');
  const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 64 });
  const proxy = createProxyServer({ agent, xfwd: false, prependPath: false });
  const url = new URL(`http://${target}`);
  const server = http.createServer((req, res) => {
    proxy.web(req, res, { target: url }, () => { res.statusCode = 502; res.end(); });
  });
  server.keepAliveTimeout = 65_000;
  server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
}

async function startFastifyHttpProxy3(port: number, target: string): Promise<void> {
  const { default: Fastify } = await import('fastify');
  const { createProxyServer } = await import('http-proxy-3');
  const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 64 });
  const proxy = createProxyServer({ agent, xfwd: false, prependPath: false });
  const url = new URL(`http://${target}`);
  const app = Fastify({ logger: false });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_r, _p, done) => done(null));
  app.all('/*', (request, reply) => {
    reply.hijack();
    proxy.web(request.raw, reply.raw, { target: url }, () => { reply.raw.statusCode = 502; reply.raw.end(); });
  });
  await app.listen({ port, host: '127.0.0.1' });
  console.log(`listening ${port}`);
}

async function startFastifyReplyFrom(port: number, target: string): Promise<void> {
  const { default: Fastify } = await import('fastify');
  const { default: replyFrom } = await import('@fastify/reply-from');
  const app = Fastify({ logger: false });
  await app.register(replyFrom, { base: `http://${target}/`, undici: { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 } });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_r, payload, done) => done(null, payload));
  app.all('/*', (request, reply) => { void reply.from(request.url); });
  await app.listen({ port, host: '127.0.0.1' });
  console.log(`listening ${port}`);
}

export interface Child { port: number; proc: ChildProcess; stop(): Promise<void> }

/** Spawns `node file args...` and waits for "listening PORT" on its stdout. */
export async function spawnListening(file: string, args: string[], env: NodeJS.ProcessEnv = {}, port?: number): Promise<Child> {
  const proc = spawn(process.execPath, [file, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => { if (out.length < 100_000) out += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { if (err.length < 20_000) err += d.toString(); });
  const stop = (): Promise<void> => new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    proc.once('exit', () => resolve());
    proc.kill('SIGKILL');
  });
  try {
    const p = await eventually(() => {
      if (proc.exitCode !== null) throw new Error(`${path.basename(file)} exited: ${err}`);
      const m = /listening (\d+)/.exec(out) ?? (port !== undefined && /router listening/.test(out) ? [out, String(port)] : null);
      return m ? Number(m[1]) : false;
    }, { timeoutMs: 20_000, intervalMs: 20, what: `${path.basename(file)} ${args[0] ?? ''} listening` });
    return { port: p, proc, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

export async function startServer(kind: ServerKind, target = ''): Promise<Child> {
  const port = await freePort();
  return spawnListening(thisFile, [kind, String(port), target]);
}

/** nginx as a reverse proxy with upstream keep-alive, one worker by default, config in a temp dir. */
export async function startNginx(target: string, workers: number | 'auto' = 1): Promise<Child> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'warmpool-nginx-'));
  writeFileSync(path.join(dir, 'nginx.conf'), `
worker_processes ${workers};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log error;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream instance { server ${target}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://instance;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
    }
  }
}
`);
  const proc = spawn('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      await new Promise<void>((resolve) => { proc.once('exit', () => resolve()); proc.kill('SIGTERM'); });
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await eventually(async () => {
      if (proc.exitCode !== null) throw new Error(`nginx exited: ${err}`);
      const r = await fetch(`http://127.0.0.1:${port}/`);
      await r.arrayBuffer();
      return r.status === 200;
    }, { timeoutMs: 10_000, intervalMs: 50, what: 'nginx up' });
  } catch (e) {
    await stop();
    throw e;
  }
  return { port, proc, stop };
}

/** Resident memory of a process (MB), from /proc; NaN if it cannot be read. */
export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/**
 * CPU time (ms) a process and its direct children have used so far, from /proc: user +
 * system time, or only one of them (`part`).
 */
export function cpuMs(pid: number, part: 'all' | 'user' | 'system' = 'all'): number {
  const ticks = (p: number): number => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime, stime (fields 14, 15 of proc(5))
      return part === 'user' ? Number(f[11]) : part === 'system' ? Number(f[12]) : Number(f[11]) + Number(f[12]);
    } catch {
      return 0;
    }
  };
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch { /* no children file */ }
  const hz = 100; // USER_HZ on Linux
  return ((ticks(pid) + children.reduce((a, c) => a + ticks(c), 0)) * 1000) / hz;
}

export interface WrkResult { rps: number; p50Ms: number; p90Ms: number; p99Ms: number; errors: number; requests: number }

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}

/** Runs wrk against a URL (bounded by duration) and parses req/s and latency percentiles. */
export function wrk(url: string, o: { connections: number; seconds: number; threads?: number; headers?: Record<string, string> }): Promise<WrkResult> {
  const args = ['-t', String(o.threads ?? 1), '-c', String(o.connections), '-d', `${o.seconds}s`, '--latency'];
  for (const [k, v] of Object.entries(o.headers ?? {})) args.push('-H', `${k}: ${v}`);
  args.push(url);
  return new Promise((resolve, reject) => {
    const p = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited ${code}: ${out}`));
      const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? NaN);
      const lat = (pct: number): number => toMs(new RegExp(`^\\s+${pct}%\\s+(\\S+)`, 'm').exec(out)?.[1] ?? '');
      const non2xx = num(/Non-2xx or 3xx responses: (\d+)/) || 0;
      const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const errors = non2xx + (sockErr ? sockErr.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
      resolve({ rps: num(/Requests\/sec:\s+([\d.]+)/), p50Ms: lat(50), p90Ms: lat(90), p99Ms: lat(99), errors, requests: num(/(\d+) requests in/) });
    });
  });
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  const [kind, port, target] = process.argv.slice(2) as [ServerKind, string, string | undefined];
  const p = Number(port);
  switch (kind) {
    case 'upstream': startUpstream(p); break;
    case 'bare-proxy': startBareProxy(p, target!); break;
    case 'node-http-proxy-3': void startNodeHttpProxy3(p, target!); break;
    case 'fastify-http-proxy-3': void startFastifyHttpProxy3(p, target!); break;
    case 'fastify-reply-from': void startFastifyReplyFrom(p, target!); break;
    default: console.error(`unknown server kind ${String(kind)}`); process.exit(2);
  }
}

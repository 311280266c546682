import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { CREDENTIAL_HEADER } from '@warmpool/registry/credentials';
import { answerAsHttp1, isWebSocketUpgrade } from '@warmpool/registry/http-upgrade';
import { systemClock, type Clock } from './clock.js';
import type { SidecarConfig } from './config.js';
import { SidecarError } from './errors.js';
import { Forwarder } from './forward.js';
import { SessionGate, type GateResult } from './gate.js';
import { silentLogger, type Logger } from './logger.js';
import { Prober, type ProbeFn, type ProberSnapshot } from './prober.js';
import { SIDECAR_PATH_PREFIX, STATUS_PATH, type SidecarStatus, type StateReport } from './protocol.js';
import { AgentReporter } from './reporter.js';
import { warmupSequence } from './warmup.js';

export interface SidecarDeps {
  clock?: Clock;
  log?: Logger;
  /** Replaces the HTTP readiness probe (tests); also the liveness probe unless liveProbe is given. */
  probe?: ProbeFn;
  liveProbe?: ProbeFn;
  /** Receives every state change instead of / besides the agent socket (tests, embedding). */
  onState?: (r: StateReport) => void;
}

export interface Sidecar {
  readonly server: http.Server;
  readonly prober: Prober;
  status(): SidecarStatus;
  /** Starts listening and probing; resolves with the bound port. */
  listen(): Promise<{ port: number }>;
  /** Stops probing and reporting, closes the listener and every connection. Idempotent. */
  close(): Promise<void>;
}

const MESSAGES: Record<Exclude<GateResult, { ok: true }>['reason'], string> = {
  'missing-credential': `this instance only serves the session that claimed it (no ${CREDENTIAL_HEADER} header)`,
  'invalid-credential': `invalid ${CREDENTIAL_HEADER} for this instance`,
  'other-session': 'this instance serves another session',
};

/**
 * An HTTP GET of a health path: the status; 'refused' when nothing listens; undefined when
 * no status line came within timeoutMs (a stalled or overloaded app).
 */
export function httpProbe(host: string, port: number, path: string, timeoutMs: number): ProbeFn {
  return () => new Promise((resolve) => {
    const req = http.get({ host, port, path, agent: false, headers: { 'user-agent': 'warmpool-sidecar' } }, (res) => {
      clearTimeout(timer);
      res.resume();
      resolve(res.statusCode);
    });
    // A deadline for the answer, not an idle timeout: a server that trickles bytes still misses.
    const timer = setTimeout(() => { resolve(undefined); req.destroy(); }, timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => { clearTimeout(timer); resolve(err.code === 'ECONNREFUSED' ? 'refused' : undefined); });
  });
}

function sendError(res: ServerResponse, err: SidecarError): void {
  if (res.headersSent) { res.destroy(); return; }
  const body = err.toBody();
  res.writeHead(err.statusCode, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function rejectUpgrade(socket: Duplex, err: SidecarError): void {
  const body = err.toBody();
  socket.end(`HTTP/1.1 ${err.statusCode} ${http.STATUS_CODES[err.statusCode]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

/**
 * The sidecar in front of one app: a credential gate and a streaming forwarder on the
 * published port, a prober of the app's readiness, and a reporter to the agent. Builds
 * without listening; `listen()` starts it.
 */
export function buildSidecar(cfg: SidecarConfig, deps: SidecarDeps = {}): Sidecar {
  const clock = deps.clock ?? systemClock;
  const log = deps.log ?? silentLogger;
  const startedAt = cfg.startedAt ?? clock.now();
  const gate = new SessionGate(cfg.instanceKey);
  const forwarder = new Forwarder({ host: cfg.app.host, port: cfg.app.port, ...(cfg.app.keepAliveMs !== undefined ? { keepAliveMs: cfg.app.keepAliveMs } : {}) });
  const probe = deps.probe ?? httpProbe(cfg.app.host, cfg.app.port, cfg.readiness.path, cfg.readiness.timeoutMs);
  const live = cfg.liveness;
  const liveProbe = deps.liveProbe ?? deps.probe ?? (live ? httpProbe(cfg.app.host, cfg.app.port, live.path, live.timeoutMs) : probe);
  const prober = new Prober(cfg.readiness, probe, clock, startedAt, {
    ...(live ? { liveness: live } : {}),
    liveProbe,
    busy: () => forwarder.inFlight() > 0,
    ...(cfg.warmup?.length ? { warmup: warmupSequence(cfg.app.host, cfg.app.port, cfg.warmup) } : {}),
  });
  const reporter = cfg.agentSocket
    ? new AgentReporter({ socketPath: cfg.agentSocket, instanceId: cfg.instanceId, instanceKey: cfg.instanceKey, clock, log })
    : undefined;

  const status = (): SidecarStatus => {
    const s = prober.snapshot();
    return {
      instanceId: cfg.instanceId, state: s.state, bootMs: s.bootMs, readyAt: s.readyAt, warmupMs: s.warmupMs, since: s.since,
      sessionPinned: gate.pinnedSession !== undefined, ...(s.reason ? { reason: s.reason } : {}),
    };
  };

  const report = (s: ProberSnapshot): void => {
    const r: StateReport = {
      instanceId: cfg.instanceId, state: s.state, bootMs: s.bootMs, at: s.since,
      ...(s.warmupMs !== null ? { warmupMs: s.warmupMs } : {}), ...(s.reason ? { reason: s.reason } : {}),
    };
    log(s.state === 'failed' || s.state === 'unhealthy' ? 'warn' : 'info', `instance ${s.state}`, { bootMs: s.bootMs, warmupMs: s.warmupMs, reason: s.reason });
    reporter?.report(r);
    deps.onState?.(r);
  };
  prober.on('state', report);

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '/';
    if (url.startsWith(SIDECAR_PATH_PREFIX)) {
      if ((url === STATUS_PATH || url.startsWith(`${STATUS_PATH}?`)) && (req.method === 'GET' || req.method === 'HEAD')) {
        const body = JSON.stringify(status());
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      sendError(res, new SidecarError('WARMPOOL_NOT_FOUND', `no such sidecar endpoint: ${req.method} ${url.split('?')[0]}`));
      return;
    }
    const verdict = gate.check(req.headers[CREDENTIAL_HEADER]);
    if (!verdict.ok) {
      req.resume();
      sendError(res, new SidecarError('WARMPOOL_FORBIDDEN', MESSAGES[verdict.reason]));
      return;
    }
    forwarder.http(req, res, (err) => {
      log('warn', 'forwarding failed', { err: err.message, url });
      sendError(res, err);
    });
  };

  const server = http.createServer({ noDelay: true }, onRequest);
  server.keepAliveTimeout = 65_000; // outlive typical router / load balancer idle timeouts
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Only WebSockets are tunnelled to the app; any other offer (h2c) is answered as the
    // plain HTTP/1.1 request it also is, through the gate and forwarder above.
    if (!isWebSocketUpgrade(req)) { answerAsHttp1(server, req, socket, head); return; }
    socket.on('error', () => socket.destroy());
    const verdict = gate.check(req.headers[CREDENTIAL_HEADER]);
    if (!verdict.ok) { rejectUpgrade(socket, new SidecarError('WARMPOOL_FORBIDDEN', MESSAGES[verdict.reason])); return; }
    forwarder.upgrade(req, socket, head);
  });
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });

  let closing: Promise<void> | undefined;
  return {
    server,
    prober,
    status,
    async listen() {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(cfg.listen.port, cfg.listen.host, () => { server.off('error', reject); resolve(); });
      });
      const port = (server.address() as AddressInfo).port;
      log('info', 'sidecar listening', {
        port, app: `${cfg.app.host}:${cfg.app.port}`, readiness: cfg.readiness.path, liveness: cfg.liveness?.path ?? cfg.readiness.path, warmups: cfg.warmup?.length ?? 0,
      });
      report(prober.snapshot());
      prober.start();
      return { port };
    },
    close() {
      closing ??= (async () => {
        prober.stop();
        reporter?.close();
        forwarder.close();
        if (!server.listening) return;
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await closed;
      })();
      return closing;
    },
  };
}

/** Builds and starts a sidecar (what `main.ts` and `warmpool sidecar` run). */
export async function startSidecar(cfg: SidecarConfig, deps: SidecarDeps = {}): Promise<Sidecar & { port: number }> {
  const s = buildSidecar(cfg, deps);
  const { port } = await s.listen();
  return Object.assign(s, { port });
}

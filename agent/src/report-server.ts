import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { AGENT_SOCKET_NAME, REPORT_HEADER, type StateReport } from '@warmpool/sidecar/protocol';

export type ReportVerdict = { status: 204 } | { status: 400 | 403 | 404; message: string };

export interface ReportHandlers {
  /** A sidecar's state report; the handler checks the token and applies it. */
  report(instanceId: string, token: string | undefined, body: StateReport): ReportVerdict;
  /** GET /v1/status: the agent's own view (instances, backoff), for operators and tests. */
  status(): unknown;
}

const REPORT_RE = /^\/v1\/instances\/([^/]+)\/state$/;
const MAX_BODY = 64 * 1024;

function send(res: ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) { res.writeHead(status).end(); return; }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

function isReport(v: unknown): v is StateReport {
  const r = v as StateReport;
  return typeof r === 'object' && r !== null && typeof r.instanceId === 'string'
    && ['booting', 'warming', 'ready', 'failed', 'unhealthy'].includes(r.state)
    && (r.bootMs === null || typeof r.bootMs === 'number') && typeof r.at === 'number'
    && (r.warmupMs === undefined || r.warmupMs === null || typeof r.warmupMs === 'number');
}

/**
 * The agent's local HTTP API on a unix socket in its run dir, which is bind-mounted into
 * every sidecar: sidecars report their state here without any network address.
 *
 *   POST /v1/instances/{id}/state   StateReport (header x-warmpool-report) -> 204
 *   GET  /v1/status                 the agent's view
 */
export class ReportServer {
  private server: http.Server;
  readonly socketPath: string;

  constructor(runDir: string, private readonly handlers: ReportHandlers) {
    this.socketPath = path.join(runDir, AGENT_SOCKET_NAME);
    this.server = http.createServer((req, res) => this.handle(req, res));
  }

  async listen(): Promise<void> {
    mkdirSync(path.dirname(this.socketPath), { recursive: true });
    // A socket file left by a previous run (killed agent) would make listen fail.
    if (existsSync(this.socketPath)) unlinkSync(this.socketPath);
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.socketPath, () => { this.server.off('error', reject); resolve(); });
    });
    chmodSync(this.socketPath, 0o660);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    if (req.method === 'GET' && url === '/v1/status') { send(res, 200, this.handlers.status()); return; }
    const m = REPORT_RE.exec(url);
    if (!m || req.method !== 'POST') { send(res, 404, { error: { code: 'WARMPOOL_NOT_FOUND', message: `no route ${req.method} ${url}` } }); return; }
    const id = decodeURIComponent(m[1]!);
    let body = '';
    let tooBig = false;
    req.setEncoding('utf8');
    req.on('data', (d: string) => { body += d; if (body.length > MAX_BODY) { tooBig = true; req.destroy(); } });
    req.on('end', () => {
      if (tooBig) return;
      let parsed: unknown;
      try { parsed = JSON.parse(body); } catch { parsed = undefined; }
      if (!isReport(parsed) || parsed.instanceId !== id) {
        send(res, 400, { error: { code: 'WARMPOOL_BAD_REPORT', message: 'body must be a StateReport for the instance in the path' } });
        return;
      }
      const v = this.handlers.report(id, req.headers[REPORT_HEADER] as string | undefined, parsed);
      if (v.status === 204) send(res, 204);
      else send(res, v.status, { error: { code: v.status === 403 ? 'WARMPOOL_FORBIDDEN' : v.status === 404 ? 'WARMPOOL_UNKNOWN_INSTANCE' : 'WARMPOOL_BAD_REPORT', message: v.message } });
    });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    try { unlinkSync(this.socketPath); } catch { /* already gone */ }
  }
}

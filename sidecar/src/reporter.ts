import http from 'node:http';
import type { Clock } from './clock.js';
import { REPORT_HEADER, reportPath, reportToken, type StateReport } from './protocol.js';
import type { Logger } from './logger.js';

export interface ReporterOptions {
  socketPath: string;
  instanceId: string;
  instanceKey: string;
  clock: Clock;
  log: Logger;
  /** Retry delay: starts here and doubles up to maxRetryMs. */
  retryMs?: number;
  maxRetryMs?: number;
  requestTimeoutMs?: number;
}

/**
 * Tells the agent about state changes, over HTTP on the agent's unix socket. The latest
 * state wins: a report not yet delivered is replaced by a newer one, and delivery is retried
 * with backoff until the agent acknowledges it (the agent may be restarting: it reads the
 * sidecar's status on adoption, and the retry catches up with it afterwards).
 */
export class AgentReporter {
  private pending: StateReport | undefined;
  private sending = false;
  private delay: number;
  private cancelRetry: (() => void) | undefined;
  private closed = false;
  private readonly token: string;

  constructor(private readonly opts: ReporterOptions) {
    this.delay = opts.retryMs ?? 100;
    this.token = reportToken(opts.instanceKey, opts.instanceId);
  }

  report(r: StateReport): void {
    if (this.closed) return;
    this.pending = r;
    this.cancelRetry?.();
    this.cancelRetry = undefined;
    void this.flush();
  }

  private async flush(): Promise<void> {
    if (this.sending || this.closed) return;
    const r = this.pending;
    if (!r) return;
    this.sending = true;
    let ok = false;
    try {
      await this.post(r);
      ok = true;
    } catch (err) {
      this.opts.log('warn', 'could not report state to the agent; retrying', { state: r.state, err: (err as Error).message, retryMs: this.delay });
    } finally {
      this.sending = false;
    }
    if (ok) {
      this.opts.log('info', 'reported state to the agent', { state: r.state });
      this.delay = this.opts.retryMs ?? 100;
      if (this.pending === r) this.pending = undefined;
      else void this.flush();
      return;
    }
    if (this.closed) return;
    if (this.pending !== r) { void this.flush(); return; }
    const wait = this.delay;
    this.delay = Math.min(this.delay * 2, this.opts.maxRetryMs ?? 5000);
    this.cancelRetry = this.opts.clock.setTimeout(() => { this.cancelRetry = undefined; void this.flush(); }, wait);
  }

  private post(r: StateReport): Promise<void> {
    const body = JSON.stringify(r);
    return new Promise((resolve, reject) => {
      const req = http.request({
        socketPath: this.opts.socketPath,
        method: 'POST',
        path: reportPath(r.instanceId),
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), [REPORT_HEADER]: this.token },
        timeout: this.opts.requestTimeoutMs ?? 5000,
      }, (res) => {
        res.resume();
        res.on('end', () => {
          const s = res.statusCode ?? 0;
          if (s >= 200 && s < 300) resolve();
          else reject(new Error(`agent answered ${s}`));
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error('agent did not answer in time')));
      req.on('error', reject);
      req.end(body);
    });
  }

  close(): void {
    this.closed = true;
    this.cancelRetry?.();
  }
}

/**
 * The demo's `[pool]` lines: one registry watch in the demo's own process (no command
 * spawned per report), a line whenever the counts change, and while instances boot, a
 * progress line at most every `progressEveryMs` (default 5 s) so a long boot is never silent.
 */
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { computeStatus, Registry, type Status } from '@warmpool/registry';

export interface PoolReporter { close(): Promise<void> }

/** `chatbot: 2 ready, 1 booting (12s, 60%), 0 claimed; 0 sessions` from a fleet status. */
export function poolLine(s: Status): { counts: string; line: string } {
  const counts = s.services.map((v) => `${v.name}: ${v.ready} ready, ${v.booting} booting, ${v.claimed} claimed`).join('; ') + `; ${s.sessions} sessions`;
  const boots = s.services.flatMap((v) => v.boots);
  const oldest = boots.reduce((a, b) => (b.elapsedMs > a ? b.elapsedMs : a), 0);
  const progress = boots.length
    ? ` (booting for up to ${Math.floor(oldest / 1000)}s${boots.every((b) => b.progress !== null) ? `, ~${Math.round(100 * Math.max(...boots.map((b) => b.progress!)))}% of a typical boot` : ''})`
    : '';
  return { counts, line: counts + progress };
}

/** Watches `prefix` in etcd at `endpoints` and calls `say` with each `[pool]` line. */
export async function reportPool(endpoints: string[], prefix: string, say: (line: string) => void, opts: { progressEveryMs?: number } = {}): Promise<PoolReporter> {
  const store = new EtcdKvStore({ endpoints });
  const reg = new Registry(store, { prefix });
  const cache = await reg.cache();
  const every = opts.progressEveryMs ?? 5_000;
  let lastCounts = '';
  let lastAt = 0;
  const report = (): void => {
    const now = Date.now();
    const s = computeStatus(cache, now);
    const { counts, line } = poolLine(s);
    const booting = s.services.some((v) => v.booting > 0);
    if (counts === lastCounts && !(booting && now - lastAt >= every)) return;
    lastCounts = counts;
    lastAt = now;
    say(`[pool] ${line}`);
  };
  let pending: NodeJS.Timeout | undefined;
  const onChange = (): void => {
    pending ??= setTimeout(() => { pending = undefined; report(); }, 200);
  };
  cache.on('change', onChange);
  const tick = setInterval(report, 1_000);
  tick.unref();
  report();
  return {
    async close() {
      clearInterval(tick);
      if (pending) clearTimeout(pending);
      cache.off('change', onChange);
      await reg.close();
      await store.close();
    },
  };
}

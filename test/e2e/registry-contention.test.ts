import t from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry, parseServiceSpec, type ClaimRecord, type SessionRecord } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { startEtcd, infraSkip, eventually } from '../src/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));

function runClaimer(endpoints: string, prefix: string) {
  const p = spawn(process.execPath, [path.join(here, 'fixtures', 'claimer.js'), endpoints, prefix], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const ready = new Promise<void>((resolve) => p.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.startsWith('ready\n')) resolve();
  }));
  const done = new Promise<{ claims: [string, string][]; errors: number }>((resolve, reject) => {
    p.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`claimer exited ${code}`));
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (!line) return reject(new Error(`claimer printed no result: ${out}`));
      resolve(JSON.parse(line));
    });
  });
  return { proc: p, ready, done };
}

t.test('3 processes claim 500 ready instances: each claimed at most once, none lost', { skip: infraSkip('etcd') }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const store = new EtcdKvStore({ endpoints: etcd.endpoints });
  const prefix = `/contention-${randomBytes(4).toString('hex')}/`;
  const reg = new Registry(store, { prefix });
  t.teardown(async () => { await reg.close(); await store.close(); });
  const spec = parseServiceSpec({ name: 'chatbot', image: 'x', warm: 0 });
  if (!spec.ok) throw new Error('spec');
  await reg.putService(spec.spec);
  const host = await reg.openHost({ id: 'h1', address: '127.0.0.1', capacity: { instances: 1000, memoryMb: 0 }, labels: {}, draining: false, startedAt: 0, agentVersion: 't' }, 30);
  t.teardown(() => host.close({ revoke: true }));
  const N = 500;
  const ids = Array.from({ length: N }, (_, i) => `i${i}`);
  for (let i = 0; i < N; i += 50) {
    await Promise.all(ids.slice(i, i + 50).map((id, k) => host.putInstance({
      id, service: 'chatbot', host: 'h1', state: 'ready', address: `127.0.0.1:${20000 + i + k}`, containerId: '', slot: null, createdAt: 0, readyAt: 0, bootMs: 0,
    }, { sessionLeaseTtlSec: 120 })));
  }
  const cache = await reg.cache();
  await eventually(() => cache.ready.count('chatbot') === N, { timeoutMs: 20_000, what: '500 ready' });

  const claimers = [0, 1, 2].map(() => runClaimer(etcd.endpoints.join(','), prefix));
  t.teardown(() => { for (const c of claimers) c.proc.kill('SIGKILL'); });
  await Promise.all(claimers.map((c) => c.ready));
  for (const c of claimers) c.proc.stdin.write('go\n');
  const results = await Promise.all(claimers.map((c) => c.done));

  const all = results.flatMap((r) => r.claims);
  const byInstance = new Map<string, string[]>();
  for (const [sid, iid] of all) byInstance.set(iid, [...(byInstance.get(iid) ?? []), sid]);
  const doubles = [...byInstance].filter(([, s]) => s.length > 1);
  t.same(doubles, [], 'no instance handed to two sessions');
  t.equal(all.length, N, 'every instance was claimed exactly once across the processes');
  t.ok(results.every((r) => r.claims.length > 0), `all three processes won claims (${results.map((r) => r.claims.length).join(', ')})`);

  // Every successful claim is in the registry: session record and claim marker agree.
  const sessions = await store.list(`${prefix}sessions/`);
  const claims = await store.list(`${prefix}claims/`);
  t.equal(sessions.entries.length, N, 'one session record per claim');
  t.equal(claims.entries.length, N, 'one claim marker per instance');
  const sessionById = new Map(sessions.entries.map((e) => [(JSON.parse(e.value) as SessionRecord).id, JSON.parse(e.value) as SessionRecord]));
  let mismatched = 0;
  for (const [sid, iid] of all) if (sessionById.get(sid)?.instanceId !== iid) mismatched++;
  for (const e of claims.entries) {
    const c = JSON.parse(e.value) as ClaimRecord;
    if (sessionById.get(c.sessionId)?.instanceId !== c.instanceId) mismatched++;
  }
  t.equal(mismatched, 0, 'what each process was told matches the registry');
});

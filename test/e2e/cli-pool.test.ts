// `warmpool apply` refuses bad pool policies with the field path and the reason; `status`,
// `status --json` and `inspect service` explain each pool's size: target, measured rate and
// boot time, the next change, and the cost figures.
import t from 'tap';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startEtcd, infraSkip, warmpool } from '../src/index.js';

t.test('pool policies: apply validates, status and inspect explain', { skip: infraSkip('etcd') }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const dir = mkdtempSync(path.join(tmpdir(), 'warmpool-cli-pool-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const env = { WARMPOOL_ETCD: etcd.endpoints.join(','), WARMPOOL_PREFIX: `/cli-pool-${randomBytes(3).toString('hex')}/` };

  const bad = path.join(dir, 'bad.yaml');
  writeFileSync(bad, [
    'services:',
    '  - name: chat',
    '    image: x',
    '    warm: { min: 5, max: 2, target: 1.2, windows: [{ start: "8am", end: "18:00", min: 1 }] }',
  ].join('\n'));
  const rejected = await warmpool(['apply', '-f', bad], env);
  t.equal(rejected.code, 1);
  t.match(rejected.stderr, /services\[0\]\.warm\.min: min \(5\) must not exceed max \(2\)/);
  t.match(rejected.stderr, /services\[0\]\.warm\.target: a probability between 0 and 1/);
  t.match(rejected.stderr, /services\[0\]\.warm\.windows\[0\]\.start: a local time "HH:MM"/);
  t.equal((await etcd.etcdctl('get', env.WARMPOOL_PREFIX, '--prefix', '--keys-only')).trim(), '', 'nothing written');

  const good = path.join(dir, 'good.yaml');
  writeFileSync(good, [
    'services:',
    '  - name: chat',
    '    image: warmpool/chatbot-demo',
    '    warm: { min: 0, max: 20, target: 0.99, windows: [{ days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "23:59", min: 2 }] }',
    '  - name: fixed',
    '    image: warmpool/chatbot-demo',
    '    warm: 3',
  ].join('\n'));
  const applied = await warmpool(['apply', '-f', good], env);
  t.equal(applied.code, 0, applied.stderr);

  const json = JSON.parse((await warmpool(['status', '--json'], env)).stdout) as { services: { name: string; target: number; pool: { static: boolean; sizing?: { reason: string; floor: number } }; cost: { hitRatio: number | null } }[] };
  const chat = json.services.find((s) => s.name === 'chat')!;
  const fixed = json.services.find((s) => s.name === 'fixed')!;
  t.match(chat, { target: 2, pool: { static: false, sizing: { floor: 2 } }, cost: { hitRatio: null } }, 'the window minimum holds, no sessions yet');
  t.match(chat.pool.sizing!.reason, /no session requested in the last 300 s: at the minimum 2/);
  t.match(fixed, { target: 3, pool: { static: true } });

  const human = (await warmpool(['status'], env)).stdout;
  t.match(human, /POOLS[\s\S]*chat: target 2; 0 slots, not 2 pool \+ 0 waiting: capped \(the fleet has room for 0 more\)/, 'no host yet: capped, and said so');
  t.match(human, /why: no session requested in the last 300 s/);
  t.match(human, /measured: 0\.00 requests\/min, boot 30\.0s \(none measured yet: the policy.s bootSec, else 30 s\)/);
  t.match(human, /fixed: static warm 3; 3 slots/);

  const inspected = JSON.parse((await warmpool(['inspect', 'service', 'chat'], env)).stdout) as { pool: { size: number; sizing: { reason: string } } };
  t.match(inspected, { name: 'chat', warm: { min: 0, max: 20, target: 0.99 }, pool: { size: 2, sizing: { reason: /at the minimum 2/ } } });
});

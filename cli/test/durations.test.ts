import t from 'tap';
import { MemoryKvStore } from '@warmpool/registry';
import { formatDuration } from '../src/durations.js';
import { sessions, status } from '../src/commands.js';

t.test('durations read as people read them', async (t) => {
  t.equal(formatDuration(0), '0s');
  t.equal(formatDuration(45_900), '45s');
  t.equal(formatDuration(185_000), '3m05s');
  t.equal(formatDuration(28_757_000), '7h59m', 'the 8 h session from the issue, not 28757s');
  t.equal(formatDuration(3 * 86_400_000 + 3_600_000 * 5), '3d05h');
  t.equal(formatDuration(-5_000), '-5s', 'a passed expiry stays visible');
  t.equal(formatDuration(Number.NaN), '-');
});

t.test('warmpool sessions prints EXPIRES IN as 7h59m; an empty fleet names the prefix and registry it looked at', async (t) => {
  const store = new MemoryKvStore();
  t.teardown(() => store.close());
  const now = Date.now();
  const rec = { id: 's1', service: 'chatbot', instanceId: 'chatbot-abc', host: 'host-1', address: '127.0.0.1:1', createdAt: now - 43_000, expiresAt: now + 28_757_000, idleTimeoutSec: 600, lease: '1' };
  await store.txn([], [{ type: 'put', key: '/wp/sessions/s1', value: JSON.stringify(rec) }]);
  const out: string[] = [];
  const io = { out: (s: string) => out.push(s), err: (s: string) => out.push(s) };
  await sessions(store, '/wp/', io, { now });
  t.match(out[0], /EXPIRES IN/);
  t.match(out[0], /s1\s+chatbot\s+chatbot-abc\s+host-1\s+43s\s+7h59m/);
  t.notMatch(out[0], /28757s/);

  out.length = 0;
  await status(store, '/other/', io, { registry: 'etcd at http://127.0.0.1:2379' });
  t.match(out[0], /none under prefix \/other\/ in etcd at http:\/\/127\.0\.0\.1:2379/, 'says where it looked');
  out.length = 0;
  await sessions(store, '/other/', io, {});
  t.match(out[0], /no sessions under prefix \/other\//);
});

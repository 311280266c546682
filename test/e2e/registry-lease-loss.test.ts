import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Registry, parseServiceSpec } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { startEtcd, infraSkip, eventually } from '../src/index.js';

t.test('a host lease lost while etcd was away is granted again and every record put back', { skip: infraSkip('etcd') }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const store = new EtcdKvStore({ endpoints: etcd.endpoints });
  const prefix = `/loss-${randomBytes(3).toString('hex')}/`;
  const reg = new Registry(store, { prefix });
  t.teardown(async () => { await reg.close(); await store.close(); });
  const spec = parseServiceSpec({ name: 'chatbot', image: 'x', warm: 1 });
  if (!spec.ok) throw new Error('spec');
  await reg.putService(spec.spec);
  const hs = await reg.openHost({ id: 'h1', address: '127.0.0.1', capacity: { instances: 4, memoryMb: 0 }, labels: {}, draining: false, startedAt: 0, agentVersion: 't' }, 2);
  t.teardown(() => hs.close({ revoke: true }));
  t.ok(await hs.takeSlot('chatbot', 0, 'i1'));
  await hs.putInstance({ id: 'i1', service: 'chatbot', host: 'h1', state: 'ready', address: '127.0.0.1:1', containerId: 'c', slot: 0, createdAt: 0, readyAt: 0, bootMs: 0 });
  const firstLease = hs.leaseId;
  const events: string[] = [];
  const t0 = Date.now();
  const log: string[] = [];
  hs.on('lost', (reason: unknown) => { events.push('lost'); log.push(`${Date.now() - t0}ms lost ${String(reason)}`); });
  hs.on('restored', () => { events.push('restored'); log.push(`${Date.now() - t0}ms restored lease ${hs.leaseId}`); });
  hs.on('error', (err: Error) => log.push(`${Date.now() - t0}ms error ${err.message}`));

  // etcd goes away for longer than the lease TTL: the host declares its lease lost. A
  // restarted etcd extends every lease by its TTL (its new leader promotes them), so the
  // host may find its lease alive and keep it; else it is granted a new one. Either way
  // every record is back, on the lease the host holds.
  await etcd.stopMember('n1');
  await new Promise((r) => setTimeout(r, 5_000));
  await etcd.startMember('n1');

  await eventually(() => events.includes('restored'), { timeoutMs: 30_000, what: 'lease restored' });
  t.ok(events.includes('lost'), 'the loss was reported');
  t.comment(hs.leaseId === firstLease ? 'the lease was still alive and resumed' : 'a new lease was granted');
  let missing: string[] = [];
  await eventually(async () => {
    missing = [];
    for (const k of ['hosts/h1', 'instances/chatbot/i1', 'slots/chatbot/0']) if (!(await store.get(`${prefix}${k}`))) missing.push(k);
    return missing.length === 0;
  }, { timeoutMs: 10_000, what: 'records back' }).catch((err: Error) => {
    throw new Error(`${err.message}; missing ${missing.join(', ')}; lease ${hs.leaseId}; events: ${log.join(' | ')}`);
  });
  const slot = await store.get(`${prefix}slots/chatbot/0`);
  t.equal(slot?.lease, hs.leaseId, 'records hang on the new lease');
});

t.test('a host lease revoked behind the host\'s back is re-granted and every record put back', { skip: infraSkip('etcd') }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const store = new EtcdKvStore({ endpoints: etcd.endpoints });
  const prefix = `/loss-${randomBytes(3).toString('hex')}/`;
  const reg = new Registry(store, { prefix });
  t.teardown(async () => { await reg.close(); await store.close(); });
  const hs = await reg.openHost({ id: 'h1', address: '127.0.0.1', capacity: { instances: 200, memoryMb: 0 }, labels: {}, draining: false, startedAt: 0, agentVersion: 't' }, 3);
  t.teardown(() => hs.close({ revoke: true }));
  for (let i = 0; i < 150; i++) {
    await hs.putInstance({ id: `i${i}`, service: 'chatbot', host: 'h1', state: 'ready', address: '127.0.0.1:1', containerId: `c${i}`, slot: null, createdAt: 0, readyAt: 0, bootMs: 0 });
  }
  const first = hs.leaseId!;
  const restored = new Promise<void>((r) => hs.once('restored', () => r()));
  await etcd.etcdctl('lease', 'revoke', BigInt(first).toString(16));
  await restored;
  t.not(hs.leaseId, first, 'a new lease was granted');
  const { entries } = await store.list(prefix);
  t.equal(entries.length, 151, 'host and 150 instances back');
  t.ok(entries.every((e) => e.lease === hs.leaseId), 'all on the new lease');
  // Put back in a few transactions, not one per record: one revision per transaction.
  const revisions = new Set(entries.map((e) => e.modRevision));
  t.ok(revisions.size <= 4, `put back in ${revisions.size} transactions`);
});

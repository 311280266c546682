// Foundation: a private etcd and the etcd3 client do what the registry relies on:
// put/get, a watch that sees writes, and a lease that is not kept alive expiring
// together with its key.
import t from 'tap';
import { Etcd3, type IKeyValue } from 'etcd3';
import { eventually, infraSkip, startEtcd, testRunId } from '../src/index.js';

t.test('etcd: put, get, watch and lease expiry', { skip: infraSkip('etcd') }, async (t) => {
  const etcd = await startEtcd({ members: 1 });
  const client = new Etcd3({ hosts: etcd.endpoints });
  t.teardown(async () => {
    client.close();
    await etcd.stop();
  });
  const prefix = `/warmpool-test/${testRunId()}/`;

  await t.test('put and read back', async (t) => {
    await client.put(`${prefix}hello`).value(JSON.stringify({ greeting: 'world' }));
    t.same(await client.get(`${prefix}hello`).json(), { greeting: 'world' });
    t.equal(await client.get(`${prefix}absent`).string(), null, 'a missing key reads as null');
    const etcdctlView = await etcd.etcdctl('get', `${prefix}hello`, '--print-value-only');
    t.equal(etcdctlView.trim(), '{"greeting":"world"}', 'etcdctl sees the same value');
  });

  await t.test('a watch sees the put', async (t) => {
    const key = `${prefix}watched`;
    const seen: string[] = [];
    const watcher = await client.watch().key(key).create();
    t.teardown(() => watcher.cancel());
    watcher.on('put', (kv: IKeyValue) => seen.push(kv.value.toString()));
    await client.put(key).value('v1');
    await client.put(key).value('v2');
    await eventually(() => seen.length >= 2, { timeoutMs: 5000, what: 'watch events' });
    t.same(seen, ['v1', 'v2'], 'both puts arrive, in order');
  });

  await t.test('an unrefreshed lease expires and takes its key with it', async (t) => {
    const key = `${prefix}leased`;
    const lease = client.lease(1, { autoKeepAlive: false });
    t.teardown(() => lease.revoke().catch(() => undefined));
    const deleted: string[] = [];
    const watcher = await client.watch().key(key).create();
    t.teardown(() => watcher.cancel());
    watcher.on('delete', (kv: IKeyValue) => deleted.push(kv.key.toString()));

    const leaseId = await lease.grant();
    t.ok(leaseId, 'lease granted');
    await lease.put(key).value('alive');
    t.equal(await client.get(key).string(), 'alive', 'key exists while the lease lives');

    const started = Date.now();
    await eventually(async () => (await client.get(key).string()) === null, {
      timeoutMs: 10_000,
      intervalMs: 100,
      what: 'leased key to disappear',
    });
    const tookMs = Date.now() - started;
    t.ok(tookMs < 8000, `key gone after ~${tookMs} ms (TTL 1 s)`);
    await eventually(() => deleted.length === 1, { timeoutMs: 5000, what: 'delete event' });
    t.same(deleted, [key], 'the watch saw the expiry as a delete');
  });
});

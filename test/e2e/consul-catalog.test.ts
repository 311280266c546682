import t from 'tap';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { Registry, MemoryKvStore, parseServiceSpec, type InstanceRecord } from '@warmpool/registry';
import { ConsulCatalog } from '@warmpool/registry/consul-catalog';
import { startConsul, infraSkip, eventually } from '../src/index.js';

const exec = promisify(execFile);

async function dig(dnsPort: number, name: string): Promise<string[]> {
  const { stdout } = await exec('dig', ['@127.0.0.1', '-p', String(dnsPort), name, 'SRV', '+short', '+time=2', '+tries=1']);
  // "1 1 PORT node.node.dc1.consul." -> port
  return stdout.split('\n').filter(Boolean).map((l) => l.split(' ')[2]!).sort();
}

t.test('Consul DNS lists exactly the ready, unclaimed instances; routers resolve too', { skip: infraSkip('consul', 'dig') }, async (t) => {
  const consul = await startConsul();
  t.teardown(() => consul.stop());
  const store = new MemoryKvStore();
  const reg = new Registry(store, { prefix: `/cat-${randomBytes(3).toString('hex')}/` });
  t.teardown(async () => { await reg.close(); await store.close(); });
  const spec = parseServiceSpec({ name: 'chatbot', image: 'x', session: { idleTimeoutSec: 60, maxLifetimeSec: 600 } });
  if (!spec.ok) throw new Error('spec');
  await reg.putService(spec.spec);
  const cache = await reg.cache();
  const host = await reg.openHost({ id: 'h1', address: '127.0.0.1', capacity: { instances: 9, memoryMb: 0 }, labels: {}, draining: false, startedAt: 0, agentVersion: 't' });
  t.teardown(() => host.close({ revoke: true }));
  const inst = (id: string, port: number, state: InstanceRecord['state']): InstanceRecord => ({ id, service: 'chatbot', host: 'h1', state, address: `127.0.0.1:${port}`, containerId: '', slot: null, createdAt: 0, readyAt: null, bootMs: null });
  await host.putInstance(inst('a', 31001, 'ready'));
  await host.putInstance(inst('b', 31002, 'ready'));
  await host.putInstance(inst('c', 31003, 'booting'));
  // Another host's instance is that host's agent's business, not ours.
  const other = await reg.openHost({ id: 'h2', address: '127.0.0.1', capacity: { instances: 9, memoryMb: 0 }, labels: {}, draining: false, startedAt: 0, agentVersion: 't' });
  t.teardown(() => other.close({ revoke: true }));
  await other.putInstance({ ...inst('z', 31009, 'ready'), host: 'h2' });

  const catalog = new ConsulCatalog({ host: '127.0.0.1', port: consul.httpPort, checkTtlSec: 10 });
  t.teardown(() => catalog.close());
  catalog.followHost(cache, 'h1');
  catalog.addRouter('r1', '127.0.0.1', 38080);
  await eventually(async () => JSON.stringify(await dig(consul.dnsPort, 'chatbot.service.consul')) === JSON.stringify(['31001', '31002']), { timeoutMs: 15_000, what: 'dns lists a and b' });
  t.pass('booting instance not listed; other host not published by this agent');
  t.same(await dig(consul.dnsPort, 'warmpool-router.service.consul'), ['38080'], 'router resolvable');

  // Claim one: it leaves DNS. The booting one turns ready: it joins.
  const r = await reg.claim({ service: 'chatbot', sessionId: 'AAAAAAAAAAAAAAAAAAAAAA' });
  t.ok(r.ok);
  const claimedPort = r.ok ? r.instance.address.split(':')[1] : '';
  await host.putInstance(inst('c', 31003, 'ready'));
  const expected = ['31001', '31002', '31003'].filter((p) => p !== claimedPort);
  await eventually(async () => JSON.stringify(await dig(consul.dnsPort, 'chatbot.service.consul')) === JSON.stringify(expected), { timeoutMs: 15_000, what: 'dns follows claim and boot' });
  t.pass('claimed instance left DNS, newly ready joined');

  await host.deleteInstance('chatbot', 'a');
  await host.deleteInstance('chatbot', 'b');
  await host.deleteInstance('chatbot', 'c');
  await eventually(async () => (await dig(consul.dnsPort, 'chatbot.service.consul')).length === 0, { timeoutMs: 15_000, what: 'dns empty' });
  t.pass('deleted instances deregistered');
});

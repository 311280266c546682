import t from 'tap';
import { MemoryKvStore } from '../src/memory-kv.js';
import { Registry } from '../src/registry.js';
import type { KvCompare, KvOp, KvTxnResult, LeaseHandle } from '../src/kv.js';
import { parseServiceSpec } from '../src/service-spec.js';

/**
 * A memory store whose transactions can be held at a gate, and whose kept leases can be
 * declared lost by the test (once, as the real etcd and Consul handles do) while the
 * store still has them: a keep-alive answer that came too late.
 */
class ControlledStore extends MemoryKvStore {
  gate: Promise<void> | undefined;
  readonly handles: (LeaseHandle & { declareLost(reason: string): void })[] = [];

  override async txn(compares: KvCompare[], ops: KvOp[], readOnFailure?: string[]): Promise<KvTxnResult> {
    if (this.gate) await this.gate;
    return super.txn(compares, ops, readOnFailure);
  }

  override async grantKeptLease(ttlSec: number): Promise<LeaseHandle> {
    const real = await super.grantKeptLease(ttlSec);
    const listeners: ((r: string) => void)[] = [];
    let fired = false;
    const fire = (reason: string): void => {
      if (fired) return;
      fired = true;
      real.release();
      for (const fn of listeners) fn(reason);
    };
    real.onLost(fire);
    const h = {
      id: real.id,
      ttlSec: real.ttlSec,
      onLost: (fn: (r: string) => void) => { listeners.push(fn); },
      revoke: () => real.revoke(),
      release: () => real.release(),
      declareLost: fire,
    };
    this.handles.push(h);
    return h;
  }

  /** The lease runs out in the store without anyone being told (its loss was already reported). */
  expireSilently(id: string): void {
    const h = this.handles.find((x) => x.id === id);
    h?.declareLost('already reported');
    this.loseLease(id);
  }
}

t.test('a lease lost while its host was recovering is recovered again, not swallowed', async (t) => {
  const store = new ControlledStore();
  const reg = new Registry(store, { prefix: '/rec/', leaseRecoveryJitterMs: 0 });
  t.teardown(async () => { await reg.close(); await store.close(); });
  const spec = parseServiceSpec({ name: 'chatbot', image: 'x', warm: 1 });
  if (!spec.ok) throw new Error('spec');
  await reg.putService(spec.spec);
  const hs = await reg.openHost({ id: 'h1', address: '127.0.0.1', capacity: { instances: 4, memoryMb: 0 }, labels: {}, draining: false, startedAt: 0, agentVersion: 't' }, 30);
  t.teardown(() => hs.close({ revoke: true }));
  t.ok(await hs.takeSlot('chatbot', 0, 'i1'));
  await hs.putInstance({ id: 'i1', service: 'chatbot', host: 'h1', state: 'ready', address: '127.0.0.1:1', containerId: 'c', slot: 0, createdAt: 0, readyAt: 0, bootMs: 0 });
  const events: string[] = [];
  hs.on('lost', () => events.push('lost'));
  hs.on('restored', () => events.push(`restored ${hs.leaseId}`));

  // The first lease goes; the recovery grants a second one and is held before its puts.
  let open!: () => void;
  store.gate = new Promise((r) => { open = r; });
  const first = hs.leaseId!;
  store.loseLease(first);
  for (let i = 0; i < 100 && store.handles.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(store.handles.length, 2, 'a second lease granted by the recovery');
  const second = store.handles[1]!;
  // Its keep-alive answer comes too late: reported lost while the recovery still runs.
  second.declareLost('keep-alive late');
  store.gate = undefined;
  open();
  for (let i = 0; i < 200 && !(hs.leaseId !== second.id && events.filter((e) => e.startsWith('restored')).length >= 2); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  t.not(hs.leaseId, second.id, 'the host moved on to a third lease');
  // The second lease now really runs out: nothing may hang on it any more.
  store.expireSilently(second.id);
  for (const k of ['hosts/h1', 'instances/chatbot/i1', 'slots/chatbot/0']) {
    const e = await store.get(`/rec/${k}`);
    t.ok(e, `${k} still there`);
    t.equal(e?.lease, hs.leaseId, `${k} on the current lease`);
  }
  t.same(events.filter((e) => e === 'lost').length, 2, 'both losses reported');
});

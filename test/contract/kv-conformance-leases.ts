/** KvStore conformance: leases (part of runKvConformance). */
import type { Test } from 'tap';
import type { KvStore } from '@warmpool/registry';
import { eventually } from '@warmpool/test';
import { elapse, leaseTiming, put } from './kv-conformance-util.js';

interface Ctx { store: KvStore; root: string }

export async function runLeaseConformance(t: Test, name: string, { store, root }: Ctx): Promise<void> {
  const timing = leaseTiming(store.backend);

  await t.test(`${name}: revoking a lease deletes its keys; keepAlive reports gone leases as 0`, async (t) => {
    const p = `${root}lease-revoke/`;
    const id = await store.grantLease(timing.ttlSec);
    t.type(id, 'string');
    await store.txn([], [put(`${p}a`, '1', id), put(`${p}b`, '2', id)]);
    const alive = await store.keepAlive([id]);
    t.ok((alive.get(id) ?? 0) > 0, 'a live lease has a positive TTL');
    await store.revokeLease(id);
    await eventually(async () => (await store.list(p)).entries.length === 0, { timeoutMs: 5000, what: 'keys of the revoked lease gone' });
    t.pass('keys disappear with their lease');
    t.equal((await store.keepAlive([id])).get(id), 0, 'keepAlive of a revoked lease returns 0');
    await store.revokeLease(id);
    t.pass('revoking twice is not an error');
    t.same([...(await store.keepAlive([])).entries()], [], 'keepAlive of nothing returns an empty map');
  });

  await t.test(`${name}: keepAlive of many leases at once`, async (t) => {
    const ids = await Promise.all(Array.from({ length: 60 }, () => store.grantLease(timing.ttlSec)));
    const gone = ids.slice(0, 5);
    await Promise.all(gone.map((id) => store.revokeLease(id)));
    const started = Date.now();
    const ttls = await store.keepAlive([...ids, ids[10]!]);
    t.equal(ttls.size, ids.length, 'one answer per distinct id');
    t.ok(gone.every((id) => ttls.get(id) === 0), 'revoked leases report 0');
    t.ok(ids.slice(5).every((id) => (ttls.get(id) ?? 0) > 0), 'live leases report a positive TTL');
    t.ok(Date.now() - started < 5000, `${ids.length} keep-alives took ${Date.now() - started} ms`);
    await Promise.all(ids.map((id) => store.revokeLease(id)));
  });

  await t.test(`${name}: a kept lease revoked by someone else is reported lost`, async (t) => {
    const lease = await store.grantKeptLease(timing.ttlSec);
    const lost: string[] = [];
    lease.onLost((r) => lost.push(r));
    await store.revokeLease(lease.id);
    // The owner learns it at its next keep-alive, at most a TTL later.
    await eventually(() => lost.length > 0, { timeoutMs: timing.ttlSec * 1000 + 3000, intervalMs: 100, what: 'onLost' });
    t.equal(lost.length, 1, `reported once: ${lost[0]}`);
    lease.release();
    await lease.revoke().catch(() => undefined);
  });

  // The slow part: each scenario waits on real TTLs, so they run side by side.
  await t.test(`${name}: leases over time (TTL ${timing.ttlSec} s)`, async (t) => {
    const p = `${root}lease-time/`;

    const expires = async (): Promise<void> => {
      const id = await store.grantLease(timing.ttlSec);
      await store.txn([], [put(`${p}expiring`, 'x', id)]);
      const started = Date.now();
      await eventually(async () => (await store.get(`${p}expiring`)) === undefined, { timeoutMs: timing.expireWithinMs, intervalMs: 200, what: 'unrefreshed lease expiry' });
      const took = Date.now() - started;
      t.ok(took >= timing.ttlSec * 1000 * 0.5, `a lease without keep-alive expired after ${took} ms (TTL ${timing.ttlSec} s)`);
      t.equal((await store.keepAlive([id])).get(id), 0, 'keepAlive of an expired lease returns 0');
    };

    const refreshed = async (): Promise<void> => {
      const id = await store.grantLease(timing.ttlSec);
      await store.txn([], [put(`${p}refreshed`, 'x', id)]);
      const until = Date.now() + timing.holdMs;
      while (Date.now() < until) {
        await elapse((timing.ttlSec * 1000) / 3);
        const ttl = (await store.keepAlive([id])).get(id) ?? 0;
        if (ttl <= 0) break;
      }
      t.equal((await store.get(`${p}refreshed`))?.value, 'x', `keepAlive kept the key past ${timing.holdMs} ms`);
      await store.revokeLease(id);
    };

    const kept = async (): Promise<void> => {
      const lease = await store.grantKeptLease(timing.ttlSec);
      t.ok(lease.ttlSec >= timing.ttlSec, `the handle reports its effective TTL (${lease.ttlSec} s)`);
      const lost: string[] = [];
      lease.onLost((r) => lost.push(r));
      await store.txn([], [put(`${p}kept`, 'x', lease.id)]);
      await elapse(timing.holdMs);
      t.equal((await store.get(`${p}kept`))?.value, 'x', `a kept lease keeps its key past ${timing.holdMs} ms`);
      t.same(lost, [], 'and is never reported lost');
      await lease.revoke();
      await eventually(async () => (await store.get(`${p}kept`)) === undefined, { timeoutMs: 5000, what: 'kept lease revoked' });
      t.pass('revoke removes its keys at once');
      await lease.revoke();
    };

    const released = async (): Promise<void> => {
      const lease = await store.grantKeptLease(timing.ttlSec);
      await store.txn([], [put(`${p}released`, 'x', lease.id)]);
      lease.release();
      t.equal((await store.get(`${p}released`))?.value, 'x', 'release does not revoke');
      await eventually(async () => (await store.get(`${p}released`)) === undefined, { timeoutMs: timing.expireWithinMs, intervalMs: 200, what: 'released lease expiry' });
      t.pass('a released lease expires by itself');
    };

    await Promise.all([expires(), refreshed(), kept(), released()]);
  });
}

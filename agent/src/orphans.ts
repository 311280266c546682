import type { AgentContext } from './actions.js';

type OrphanContext = Pick<AgentContext, 'hostId' | 'cache' | 'local' | 'starting' | 'host' | 'registry' | 'failedRecords' | 'log'>;

/**
 * Removes registry records and warm slots that name this host but no instance it runs, and
 * returns how many it removed. Two sources: an earlier run of the agent (start-up, after
 * adoption), and a write that failed while etcd was away (a retired instance whose slot
 * delete failed leaves the slot on the host's live lease: every agent then counts the pool
 * as full and it never refills). Run at start-up and at every periodic full check.
 *
 * Safe against in-flight work: an instance is in `local` from the moment its slot is taken
 * until its destroy has deleted its record and slot, and a service with a start in flight
 * (`starting`: its slot may show in the cache before the take returns) is skipped; the
 * failed record kept visible on purpose (`failedRecords`) is left alone. A slot is deleted only if unchanged since the
 * cache saw it (modRevision compare). Registry errors are left for the next pass.
 */
export async function removeOrphans(ctx: OrphanContext): Promise<number> {
  let removed = 0;
  const kept = new Set(ctx.failedRecords.values());
  for (const { value: i } of [...ctx.cache.instances.values()]) {
    if (i.host !== ctx.hostId || ctx.local.has(i.id) || kept.has(i.id) || ctx.starting.has(i.service)) continue;
    try {
      await ctx.host.deleteInstance(i.service, i.id);
      removed++;
      ctx.log.info({ instance: i.id, service: i.service }, 'removed a registry record of no instance on this host');
    } catch { /* the next pass */ }
  }
  for (const [key, v] of [...ctx.cache.slots]) {
    const s = v.value;
    if (s.host !== ctx.hostId || ctx.local.has(s.instanceId) || ctx.starting.has(s.service)) continue;
    try {
      const r = await ctx.registry.store.txn([{ key, op: 'modRevision', equals: v.modRevision }], [{ type: 'delete', key }]);
      if (!r.succeeded) continue;
      if (ctx.host.heldSlots().some((h) => h.service === s.service && h.slot === s.slot && h.instanceId === s.instanceId)) ctx.host.forgetSlot(s.service, s.slot);
      removed++;
      ctx.log.info({ service: s.service, slot: s.slot, instance: s.instanceId }, 'freed a warm slot held for no instance on this host');
    } catch { /* the next pass */ }
  }
  return removed;
}

import { STATUS_PATH, type SidecarStatus } from '@warmpool/sidecar/protocol';
import type { AgentContext } from './actions.js';
import { decideAdoption, type AdoptionCandidate } from './adopt.js';
import { podSidecarPort } from './container-spec.js';
import type { ContainerSummary } from './docker.js';
import { gpusFromLabels, LABEL } from './labels.js';
import type { LocalInstance } from './plan.js';
import { fetchSidecarStatus } from './sidecar-client.js';
import { removeOrphans } from './orphans.js';

/**
 * Start-up: takes back this host's containers (same ids, same containers; none created)
 * or removes them, then clears registry records and slots of this host that belong to
 * nothing adopted. Records of an earlier run live on that run's lease, which is still
 * running out; re-putting them on the new lease keeps routers from ever seeing them vanish.
 */
export async function adoptContainers(ctx: AgentContext): Promise<void> {
  const rows = await ctx.runtime.list({ [LABEL.cluster]: ctx.cluster, [LABEL.host]: ctx.hostId });
  const groups = new Map<string, { service: string; app?: ContainerSummary; sidecar?: ContainerSummary; other: ContainerSummary[] }>();
  for (const r of rows) {
    const id = r.labels[LABEL.instance];
    const service = r.labels[LABEL.service];
    if (!id || !service) { await ctx.runtime.remove(r.id).catch(() => undefined); continue; }
    const g = groups.get(id) ?? { service, other: [] };
    const role = r.labels[LABEL.role];
    if (role === 'app' && !g.app) g.app = r;
    else if (role === 'sidecar' && !g.sidecar) g.sidecar = r;
    else g.other.push(r);
    groups.set(id, g);
  }

  await Promise.all([...groups].map(async ([instanceId, g]) => {
    const spec = ctx.cache.services.get(g.service)?.value;
    const recEntry = ctx.cache.instances.get(instanceId)?.value;
    const record = recEntry && recEntry.host === ctx.hostId ? recEntry : undefined;
    // The pod's published port is on its sidecar (pods made by agents before isolation: on the app).
    const ports = { ...g.app?.ports, ...g.sidecar?.ports };
    const containerPort = spec?.containerPort ?? Number(Object.keys(ports)[0] ?? 0);
    const hostPort = ports[podSidecarPort(ctx.sidecarPort, containerPort)] ?? Object.values(ports)[0];
    const address = hostPort ? `${ctx.address}:${hostPort}` : undefined;
    const status = address && g.app?.running ? await fetchSidecarStatus<SidecarStatus>(address, STATUS_PATH) : undefined;
    const cand: AdoptionCandidate = {
      instanceId, service: g.service, serviceExists: spec !== undefined,
      ...(g.app ? { app: g.app } : {}), ...(g.sidecar ? { sidecar: g.sidecar } : {}), ...(record ? { record } : {}),
      ...(status ? { status } : {}),
    };
    const claim = ctx.cache.claims.get(instanceId)?.value.sessionId;
    if (claim) cand.claimSession = claim;
    const d = decideAdoption(cand);
    let removeReason: string | undefined = d.adopt ? undefined : d.reason;
    if (d.adopt) {
      const inst: LocalInstance = {
        id: instanceId, service: g.service, phase: d.phase, slot: d.slot, slotSeen: false,
        specHash: g.app!.labels[LABEL.spec] ?? '', memoryMb: spec?.resources.memoryMb ?? 0,
        // The GPU allocation is rebuilt from the containers themselves.
        ...(gpusFromLabels(g.app!.labels).length ? { gpus: gpusFromLabels(g.app!.labels) } : {}),
        createdAt: record?.createdAt ?? g.app!.createdAt, startedAt: g.app!.createdAt, launchedAt: ctx.clock.now(),
        readyAt: status?.readyAt ?? record?.readyAt ?? null, bootMs: record?.bootMs ?? status?.bootMs ?? null,
        ...(record?.stages ? { stages: record.stages } : {}),
        ...(status?.state === 'warming' && d.phase === 'booting' ? { warmingSince: status.since, readinessAt: status.since } : {}),
        appContainerId: g.app!.id, sidecarContainerId: g.sidecar!.id, ...(address ? { address } : {}),
        ...(d.sessionId ? { sessionId: d.sessionId } : {}),
      };
      if (d.slot !== null && !(await ctx.host.adoptSlot(g.service, d.slot, instanceId))) {
        removeReason = `its warm slot ${d.slot} is held by another instance now`;
      } else {
        ctx.local.set(instanceId, inst);
        await ctx.host.putInstance({
          id: inst.id, service: inst.service, host: ctx.hostId, state: inst.phase === 'creating' ? 'booting' : inst.phase,
          address: inst.address ?? '', containerId: inst.appContainerId ?? '', slot: inst.slot,
          createdAt: inst.createdAt, readyAt: inst.readyAt, bootMs: inst.bootMs, ...(inst.gpus ? { gpus: inst.gpus } : {}),
          ...(inst.stages ? { stages: inst.stages } : {}),
        }, inst.phase === 'ready' && spec ? { sessionLeaseTtlSec: spec.session.idleTimeoutSec } : {});
        ctx.log.info({ instance: instanceId, service: g.service, phase: inst.phase, slot: inst.slot, container: inst.appContainerId?.slice(0, 12) }, 'adopted instance');
      }
    }
    if (removeReason !== undefined) {
      ctx.log.info({ instance: instanceId, service: g.service, reason: removeReason }, 'removing a container pair found at start-up');
      if (!d.adopt && d.endSession) await ctx.registry.endSession(d.endSession, 'instance-gone').catch(() => false);
      await Promise.all([g.sidecar, g.app].filter((c): c is ContainerSummary => !!c).map((c) => ctx.runtime.remove(c.id)));
    }
    await Promise.all(g.other.map((c) => ctx.runtime.remove(c.id).catch(() => undefined)));
  }));

  // Records and slots of this host from an earlier run that nothing adopted.
  await removeOrphans(ctx);
}

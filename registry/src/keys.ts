/**
 * The registry layout. Everything lives under one prefix (default /warmpool/); values are
 * JSON. docs/registry.md shows each key with etcdctl.
 *
 *   {p}services/{service}                 ServiceSpec            (warmpool apply)
 *   {p}hosts/{host}                       HostRecord             host lease
 *   {p}drain/{host}                       {"draining":true}      warmpool drain (no lease)
 *   {p}instances/{service}/{instance}     InstanceRecord         host lease
 *   {p}slots/{service}/{n}                SlotRecord             host lease; deleted by the claim
 *   {p}claims/{service}/{instance}        ClaimRecord            session lease
 *   {p}sessions/{session}                 SessionRecord          session lease
 *   {p}idempotency/{service}/{key}        {"sessionId"}          session lease
 *   {p}tombstones/{session}               TombstoneRecord        shared tombstone lease
 *   {p}demand/{service}/{router}          DemandRecord           router lease (waiting sessions)
 *   {p}cluster                            {"secret"}             created once (credential key)
 */
export const DEFAULT_PREFIX = '/warmpool/';

export type KeyKind = 'services' | 'hosts' | 'drain' | 'instances' | 'slots' | 'claims' | 'sessions' | 'idempotency' | 'tombstones' | 'cluster' | 'demand';

export class Keys {
  constructor(readonly prefix: string = DEFAULT_PREFIX) {
    if (!prefix.startsWith('/') || !prefix.endsWith('/')) {
      throw new Error(`registry prefix must start and end with "/": ${JSON.stringify(prefix)}`);
    }
  }
  service(name: string): string { return `${this.prefix}services/${name}`; }
  host(id: string): string { return `${this.prefix}hosts/${id}`; }
  drain(id: string): string { return `${this.prefix}drain/${id}`; }
  instance(service: string, id: string): string { return `${this.prefix}instances/${service}/${id}`; }
  slot(service: string, n: number): string { return `${this.prefix}slots/${service}/${n}`; }
  claim(service: string, instanceId: string): string { return `${this.prefix}claims/${service}/${instanceId}`; }
  session(id: string): string { return `${this.prefix}sessions/${id}`; }
  idempotency(service: string, key: string): string { return `${this.prefix}idempotency/${service}/${encodeURIComponent(key)}`; }
  tombstone(id: string): string { return `${this.prefix}tombstones/${id}`; }
  cluster(): string { return `${this.prefix}cluster`; }
  demand(service: string, router: string): string { return `${this.prefix}demand/${service}/${router}`; }
  kindPrefix(kind: KeyKind): string { return `${this.prefix}${kind}/`; }

  /** Splits a full key into its kind and path parts; undefined for keys outside the layout. */
  parse(key: string): { kind: KeyKind; parts: string[] } | undefined {
    if (!key.startsWith(this.prefix)) return undefined;
    const rest = key.slice(this.prefix.length);
    if (rest === 'cluster') return { kind: 'cluster', parts: [] };
    const [kind, ...parts] = rest.split('/');
    switch (kind) {
      case 'services': case 'hosts': case 'drain': case 'sessions': case 'tombstones':
        return parts.length === 1 && parts[0] ? { kind, parts } : undefined;
      case 'instances': case 'slots': case 'claims': case 'idempotency': case 'demand':
        return parts.length === 2 && parts[0] && parts[1] ? { kind, parts } : undefined;
      default:
        return undefined;
    }
  }
}

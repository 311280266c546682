/**
 * Ready-and-unclaimed instances per service, grouped by host. add/remove are O(1)
 * (swap-remove arrays); pick is O(hosts): it takes from the host with the most ready
 * instances, which spreads sessions across hosts, and a random instance there, which keeps
 * concurrent claimers on different routers from colliding on the same instance.
 */
export class ReadyIndex {
  private byService = new Map<string, Map<string, string[]>>();
  private pos = new Map<string, { service: string; host: string; i: number }>();

  add(service: string, host: string, id: string): boolean {
    if (this.pos.has(id)) return false;
    let hosts = this.byService.get(service);
    if (!hosts) this.byService.set(service, (hosts = new Map()));
    let arr = hosts.get(host);
    if (!arr) hosts.set(host, (arr = []));
    this.pos.set(id, { service, host, i: arr.length });
    arr.push(id);
    return true;
  }

  remove(_service: string, id: string): boolean {
    const p = this.pos.get(id);
    if (!p) return false;
    const hosts = this.byService.get(p.service)!;
    const arr = hosts.get(p.host)!;
    const last = arr.pop()!;
    if (last !== id) {
      arr[p.i] = last;
      this.pos.get(last)!.i = p.i;
    }
    if (arr.length === 0) hosts.delete(p.host);
    if (hosts.size === 0) this.byService.delete(p.service);
    this.pos.delete(id);
    return true;
  }

  has(id: string): boolean { return this.pos.has(id); }

  count(service: string): number {
    let n = 0;
    for (const arr of this.byService.get(service)?.values() ?? []) n += arr.length;
    return n;
  }

  pick(service: string, exclude: ReadonlySet<string> | undefined, random: () => number): string | undefined {
    const hosts = this.byService.get(service);
    if (!hosts) return undefined;
    // Hosts ordered by ready count (desc); within a host, a random start then a scan that
    // skips excluded ids (bounded by the host's array length).
    const ordered = [...hosts.values()].sort((a, b) => b.length - a.length);
    for (const arr of ordered) {
      const start = Math.floor(random() * arr.length);
      for (let k = 0; k < arr.length; k++) {
        const id = arr[(start + k) % arr.length]!;
        if (!exclude?.has(id)) return id;
      }
    }
    return undefined;
  }
}

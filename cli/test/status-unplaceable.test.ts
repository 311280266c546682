import t from 'tap';
import { computeStatus, renderStatus } from '../src/status.js';

// A service asking more GPUs per instance than any host has, or host labels no host carries,
// was accepted and then simply never started: status showed 0 ready and nothing else.
const v = <T>(value: T) => ({ value, modRevision: '1' });
const host = (id: string, gpus: number, labels: Record<string, string> = {}) =>
  [id, v({ id, address: '127.0.0.1', capacity: { instances: 8, memoryMb: 0, gpus }, labels, draining: false })] as const;
const cacheOf = (services: [string, object][], hosts: ReturnType<typeof host>[]) => ({
  services: new Map(services.map(([n, s]) => [n, v({ name: n, warm: 1, ...s })])),
  hosts: new Map(hosts), instances: new Map(), claims: new Map(), sessions: new Map(), drains: new Set(),
});

t.test('status says why a service can be placed on no host', async (t) => {
  const s = computeStatus(cacheOf([
    ['big', { resources: { gpus: 16 } }],
    ['lab', { placement: { hostLabels: { gpu: 'b200' } } }],
    ['fits', { resources: { gpus: 4 }, placement: { hostLabels: { gpu: 'h100' } } }],
    ['none', { warm: 0, resources: { gpus: 99 } }],
  ], [host('g1', 8, { gpu: 'h100' }), host('g2', 4, { gpu: 'h100' })]) as never, 0);
  t.equal(s.services.find((x) => x.name === 'big')!.unplaceable, 'needs 16 GPUs per instance; the largest host has 8');
  t.equal(s.services.find((x) => x.name === 'lab')!.unplaceable, 'no host has the labels gpu=b200');
  t.equal(s.services.find((x) => x.name === 'fits')!.unplaceable, null);
  t.equal(s.services.find((x) => x.name === 'none')!.unplaceable, null, 'nothing to place');
  const text = renderStatus(s);
  t.match(text, /NOT PLACEABLE[\s\S]*big\s+needs 16 GPUs per instance; the largest host has 8/);
  t.match(text, /lab\s+no host has the labels gpu=b200/);
  t.notMatch(text, /fits\s+(needs|no host)/);
  t.equal(computeStatus(cacheOf([['big', { resources: { gpus: 16 } }]], []) as never, 0).services[0]!.unplaceable, null, 'no hosts yet: nothing to say');
});

t.test('status says when an instance needs more memory than any host has', async (t) => {
  const mem = (id: string, memoryMb: number, gpus = 0) =>
    [id, v({ id, address: '127.0.0.1', capacity: { instances: 8, memoryMb, gpus }, labels: {}, draining: false })] as const;
  const s = computeStatus(cacheOf([
    ['huge', { resources: { memoryMb: 30_000 } }],
    ['fits', { resources: { memoryMb: 20_000 } }],
    ['gpu-huge', { resources: { memoryMb: 30_000, gpus: 2 } }],
  ], [mem('m1', 21_736), mem('m2', 16_000), mem('g1', 40_000, 1)]) as never, 0);
  t.equal(s.services.find((x) => x.name === 'huge')!.unplaceable, null, 'g1 has the memory (no GPUs asked)');
  t.equal(s.services.find((x) => x.name === 'fits')!.unplaceable, null);
  t.equal(s.services.find((x) => x.name === 'gpu-huge')!.unplaceable, 'needs 2 GPUs per instance; the largest host has 1');
  const small = computeStatus(cacheOf([['huge', { resources: { memoryMb: 30_000 } }]], [mem('m1', 21_736), mem('m2', 16_000)]) as never, 0);
  t.equal(small.services[0]!.unplaceable, 'needs 30000 MB of memory per instance; the largest host has 21736 MB');
  t.match(renderStatus(small), /30000 MB of memory/, 'shown in the status text');
  const unlimited = computeStatus(cacheOf([['huge', { resources: { memoryMb: 30_000 } }]], [mem('m1', 21_736), mem('m0', 0)]) as never, 0);
  t.equal(unlimited.services[0]!.unplaceable, null, 'a host with no memory capacity set takes any memory');
});

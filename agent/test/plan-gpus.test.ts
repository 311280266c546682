import t from 'tap';
import { plan } from '../src/plan.js';
import { input, inst, spec, starts } from './plan-fixtures.js';

const gpuSpec = (gpus: number, over = {}) => spec({ resources: { memoryMb: 0, cpus: 0, gpus }, ...over });

t.test('a start gets exclusive GPUs: never one already held by an instance or a start in flight', async (t) => {
  const p = plan(input({ services: [gpuSpec(2)], gpuInventory: ['0', '1', '2', '3'] }));
  t.same(starts(p.actions).map((a) => a.gpus), [['0', '1']], 'the lowest free ids');
  const held = plan(input({
    services: [gpuSpec(2), gpuSpec(1, { name: 'small' })], gpuInventory: ['0', '1', '2', '3'],
    local: [inst('a', { gpus: ['0', '2'], slot: 0 })],
  }));
  t.same(starts(held.actions).map((a) => [a.service, a.gpus]), [['chat', ['1', '3']]], 'the second service finds none left in the same round');
  const inflight = plan(input({
    services: [gpuSpec(2), gpuSpec(1, { name: 'small' })], gpuInventory: ['0', '1', '2'], starting: ['chat'], startingGpus: { chat: ['0', '1'] },
  }));
  t.same(starts(inflight.actions).map((a) => [a.service, a.gpus]), [['small', ['2']]], 'GPUs reserved by a start in flight are not given twice');
});

t.test('a host without enough free GPUs takes no warm slot for the service', async (t) => {
  t.same(starts(plan(input({ services: [gpuSpec(1)] })).actions), [], 'no inventory');
  t.same(starts(plan(input({ services: [gpuSpec(2)], gpuInventory: ['0', '1'], local: [inst('a', { gpus: ['1'] })] })).actions), [], 'one free, two needed');
  const freed = plan(input({ services: [gpuSpec(2)], gpuInventory: ['0', '1'], local: [] }));
  t.same(starts(freed.actions).map((a) => a.gpus), [['0', '1']], 'free again once the instance is gone from the host');
  t.same(starts(plan(input({ services: [spec()] })).actions).map((a) => a.gpus), [[]], 'services without GPUs need none');
});

t.test('placement: only hosts whose labels match take the service; spread ignores hosts that cannot', async (t) => {
  const placed = spec({ placement: { hostLabels: { gpu: 'h100' } } });
  t.same(starts(plan(input({ services: [placed] })).actions), [], 'unlabelled host');
  t.same(starts(plan(input({ services: [placed], hostLabels: { gpu: 'a100' } })).actions), [], 'other label value');
  t.equal(starts(plan(input({ services: [placed], hostLabels: { gpu: 'h100', zone: 'a' } })).actions).length, 1, 'matching host');
  const local = [inst('a', { slot: 0 })];
  const fleet = (labels: Record<string, string>, freeGpus?: number) => ({ hosts: [{ id: 'h2', perService: {}, labels, ...(freeGpus !== undefined ? { freeGpus } : {}) }] });
  const other = plan(input({ services: [placed], hostLabels: { gpu: 'h100' }, local, fleet: fleet({}) }));
  t.equal(starts(other.actions)[0]?.delayMs, 0, 'an emptier host that may not run it does not delay us');
  const same = plan(input({ services: [placed], hostLabels: { gpu: 'h100' }, local, fleet: fleet({ gpu: 'h100' }) }));
  t.equal(starts(same.actions)[0]?.delayMs, 50, 'an emptier matching host does');
  const g = gpuSpec(1);
  const full = plan(input({ services: [g], gpuInventory: ['0', '1'], local: [inst('a', { gpus: ['0'] })], fleet: fleet({}, 0) }));
  t.equal(starts(full.actions)[0]?.delayMs, 0, 'an emptier host without a free GPU does not delay us');
});

t.test('placement changed: unclaimed instances on a host that no longer matches are retired, claimed ones finish', async (t) => {
  const placed = spec({ placement: { hostLabels: { gpu: 'h100' } } });
  const local = [inst('a', { slot: 0 }), inst('b', { phase: 'claimed', slot: null, sessionId: 's1' })];
  const p = plan(input({ services: [placed], hostLabels: { gpu: 'a100' }, local, fleet: { slots: { chat: { 0: 'a' } }, claims: { b: 's1' } } }));
  t.match(p.actions.filter((a) => a.type === 'destroy'), [{ instanceId: 'a', failure: false, reason: /placement/ }]);
  t.same(starts(p.actions), [], 'and no replacement here');
  t.same(plan(input({ services: [{ ...placed, warm: 1 }], hostLabels: { gpu: 'h100' }, local: [inst('a', { slot: 0 })], fleet: { slots: { chat: { 0: 'a' } } } })).actions, [], 'matching: kept');
});

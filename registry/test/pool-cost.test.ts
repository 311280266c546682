import t from 'tap';
import { instanceStates } from '../src/pool-cost.js';
import type { ClaimRecord, InstanceRecord, ServiceSpec } from '../src/types.js';

const v = <T>(value: T) => ({ value, modRevision: '1' });
const inst = (id: string, service: string, state: InstanceRecord['state']): [string, ReturnType<typeof v<InstanceRecord>>] =>
  [id, v({ id, service, host: 'h', state, address: 'a', containerId: '', slot: null, createdAt: 0 } as InstanceRecord)];
const claim = (id: string, service: string, ended = false): [string, ReturnType<typeof v<ClaimRecord>>] =>
  [id, v({ sessionId: `s-${id}`, service, instanceId: id, claimedAt: 0, ...(ended ? { ended: true } : {}) } as ClaimRecord)];

t.test('instanceStates counts idle, busy and booting instances and their GPUs per service, services interleaved', async (t) => {
  const gpu = { name: 'gpu', resources: { gpus: 2 } } as unknown as ServiceSpec;
  const cpu = { name: 'cpu' } as unknown as ServiceSpec;
  const cache = {
    services: new Map([['gpu', v(gpu)], ['cpu', v(cpu)]]),
    instances: new Map([
      inst('g1', 'gpu', 'ready'), inst('c1', 'cpu', 'ready'), inst('g2', 'gpu', 'ready'), inst('c2', 'cpu', 'booting'),
      inst('g3', 'gpu', 'claimed'), inst('c3', 'cpu', 'ready'), inst('g4', 'gpu', 'ready'),
    ]),
    claims: new Map([claim('g2', 'gpu'), claim('c3', 'cpu'), claim('g4', 'gpu', true)]),
  };
  const states = instanceStates(cache);
  t.same(states.get('gpu'), { idle: 1, busy: 2, booting: 0, idleGpus: 2, busyGpus: 4 }, 'an ended claim is neither idle nor busy');
  t.same(states.get('cpu'), { idle: 1, busy: 1, booting: 1, idleGpus: 0, busyGpus: 0 });
});

// The dashboard's state: a pulling instance carries its pull percent; each service says on
// how many hosts its image is.
import t from 'tap';
import { dashboardState } from '../src/dashboard.js';
import { PoolMonitor } from '../src/pool-monitor.js';

const v = <T>(value: T) => ({ value, modRevision: '1' });

t.test('pulling instances and image hosts in the dashboard state', async (t) => {
  const image = '127.0.0.1:5000/chat:v1';
  const cache = {
    services: new Map([['chat', v({ name: 'chat', warm: 2, image })]]),
    hosts: new Map([
      ['h1', v({ id: 'h1', address: '127.0.0.1', capacity: { instances: 4, memoryMb: 0 }, draining: false, images: { [image]: { state: 'present', at: 1 } } })],
      ['h2', v({ id: 'h2', address: '127.0.0.1', capacity: { instances: 4, memoryMb: 0 }, draining: false, images: { [image]: { state: 'pulling', percent: 40, at: 1 } } })],
    ]),
    instances: new Map([['p', v({ id: 'p', service: 'chat', host: 'h2', state: 'pulling', address: '', containerId: '', slot: 0, createdAt: 0, readyAt: null, bootMs: null, pull: { image, bytesDone: 4, bytesTotal: 10, percent: 40 } })]]),
    claims: new Map(), sessions: new Map(), drains: new Set(),
  };
  const s = dashboardState(cache as never, new PoolMonitor(), 1000);
  t.match(s.instances[0], { id: 'p', state: 'pulling', pullPercent: 40 });
  t.match(s.status.services[0], { pulling: 1, imagePresentOn: 1 });
});

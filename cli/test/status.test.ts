import t from 'tap';
import { computeStatus, renderStatus } from '../src/status.js';

const v = <T>(value: T) => ({ value, modRevision: '1' });

t.test('status counts per service and shows boot progress from the typical boot time', async (t) => {
  const inst = (id: string, state: string, extra: object = {}) => [id, v({ id, service: 'chatbot', host: 'h1', state, address: 'a', containerId: '', slot: null, createdAt: 0, readyAt: null, bootMs: null, ...extra })] as const;
  const cache = {
    services: new Map([['chatbot', v({ name: 'chatbot', warm: 3, maxPerHost: 8, resources: { memoryMb: 0, cpus: 0 } })]]),
    hosts: new Map([['h1', v({ id: 'h1', address: '127.0.0.1', capacity: { instances: 8, memoryMb: 0 }, draining: false })]]),
    instances: new Map([inst('a', 'ready', { bootMs: 20_000 }), inst('b', 'ready', { bootMs: 20_000 }), inst('c', 'booting', { createdAt: 90_000 }), inst('d', 'failed')]),
    claims: new Map([['b', v({ sessionId: 's', service: 'chatbot', instanceId: 'b', claimedAt: 0 })]]),
    sessions: new Map([['s', v({})]]),
    drains: new Set(['h1']),
    tombstones: new Map(),
    demand: new Map([['/p/demand/chatbot/r1', v({ service: 'chatbot', router: 'r1', waiting: 2, oldestSince: 0, at: 0 })]]),
  };
  const s = computeStatus(cache as never, 100_000);
  t.match(s.services[0], { name: 'chatbot', target: 3, ready: 1, claimed: 1, booting: 1, failed: 1, typicalBootMs: 20_000 });
  t.equal(s.services[0]!.boots[0]!.progress, 0.5, '10 s into a 20 s boot');
  t.equal(s.hosts[0]!.draining, true, 'drain marker shows');
  const text = renderStatus(s);
  t.match(text, /chatbot\s+3\s+2\s+1\s+1\s+1\s+1\s+20\.0s/, 'target, waiting, ready, booting, claimed, failed, typical boot');
  t.match(text, /POOLS\nchatbot: static warm 3; 3 slots = 3 pool \+ 2 waiting \(capped: the fleet has room for 0 more\)/, 'draining host: no room for the waiters');
  t.match(text, /cost: hit ratio - of 1 sessions; 0 waited/);
  t.match(text, /50%/);
  t.match(text, /SESSIONS 1/);
});

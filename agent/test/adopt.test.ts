import t from 'tap';
import { decideAdoption, type AdoptionCandidate } from '../src/adopt.js';
import type { ContainerSummary } from '../src/docker.js';

const c = (running = true, labels: Record<string, string> = {}): ContainerSummary => ({ id: 'x', labels, running, createdAt: 1, ports: { 9000: 32000 } });
const base = (over: Partial<AdoptionCandidate> = {}): AdoptionCandidate => ({
  instanceId: 'i1', service: 'chat', app: c(true, { 'warmpool.slot': '2' }), sidecar: c(), serviceExists: true, ...over,
});
const status = (state: 'booting' | 'ready' | 'failed' | 'unhealthy', sessionPinned = false) => ({ instanceId: 'i1', state, bootMs: null, readyAt: null, since: 1, sessionPinned });

t.test('a healthy unclaimed pair is adopted into its slot (record first, label otherwise)', async (t) => {
  t.same(decideAdoption(base({ status: status('ready') })), { adopt: true, phase: 'ready', slot: 2 });
  t.same(decideAdoption(base({ record: { id: 'i1', service: 'chat', host: 'h', state: 'ready', address: '', containerId: '', slot: 1, createdAt: 1, readyAt: 1, bootMs: 1 } })),
    { adopt: true, phase: 'booting', slot: 1 }, 'sidecar unreachable: booting (the boot timeout still applies)');
});

t.test('a claimed pair is adopted as claimed', async (t) => {
  t.same(decideAdoption(base({ claimSession: 's1', status: status('ready', true) })), { adopt: true, phase: 'claimed', slot: null, sessionId: 's1' });
});

t.test('removed: stopped containers (ending the session), failed sidecars, used instances, removed services, no slot', async (t) => {
  t.match(decideAdoption(base({ app: c(false), claimSession: 's1' })), { adopt: false, endSession: 's1' });
  t.match(decideAdoption(base({ sidecar: undefined })), { adopt: false, reason: /sidecar/ });
  t.match(decideAdoption(base({ status: status('unhealthy') })), { adopt: false });
  t.match(decideAdoption(base({ status: status('ready', true) })), { adopt: false, reason: /served a session/ });
  t.match(decideAdoption(base({ record: { id: 'i1', service: 'chat', host: 'h', state: 'claimed', address: '', containerId: '', slot: null, createdAt: 1, readyAt: 1, bootMs: 1 } })),
    { adopt: false, reason: /session ended/ });
  t.match(decideAdoption(base({ serviceExists: false })), { adopt: false, reason: 'service removed' });
  t.match(decideAdoption(base({ app: c(true, {}) })), { adopt: false, reason: 'holds no warm slot' });
});

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
  t.match(text, /POOLS\nchatbot: static warm 3; 3 slots, not 3 pool \+ 2 waiting: capped \(the fleet has room for 0 more\)/, 'draining host: no room for the waiters');
  t.match(text, /cost: hit ratio - of 1 sessions; 0 waited/);
  t.match(text, /50%/);
  t.match(text, /SESSIONS 1/);
});

t.test('status shows GPUs used/free per host, each instance\'s GPUs, and why instances failed', async (t) => {
  const inst = (id: string, state: string, extra: object = {}) => [id, v({ id, service: 'vllm', host: 'g1', state, address: 'a', containerId: '', slot: 0, createdAt: 0, readyAt: null, bootMs: null, ...extra })] as const;
  const cache = {
    services: new Map([['vllm', v({ name: 'vllm', warm: 2 })]]),
    hosts: new Map([['g1', v({ id: 'g1', address: '127.0.0.1', capacity: { instances: 8, memoryMb: 0, gpus: 4 }, draining: false })]]),
    instances: new Map([
      inst('a', 'ready', { gpus: ['0', '1'] }),
      inst('b', 'failed', { reason: 'launch failed: secretEnv.HF_TOKEN: cannot read the secret file /etc/warmpool/secrets/hf_token on this host (ENOENT)' }),
    ]),
    claims: new Map(), sessions: new Map(), drains: new Set(),
  };
  const s = computeStatus(cache as never, 0);
  t.same(s.hosts[0]!.gpus, { total: 4, used: 2 });
  t.same(s.gpuInstances, [{ instance: 'a', service: 'vllm', host: 'g1', gpus: ['0', '1'] }]);
  const text = renderStatus(s);
  t.match(text, /g1\s+127\.0\.0\.1\s+2\/8\s+2\/2\s+active/, 'used/free');
  t.match(text, /a\s+vllm\s+g1\s+0,1/);
  t.match(text, /FAILED[\s\S]*vllm\s+b\s+g1\s+launch failed: secretEnv\.HF_TOKEN: cannot read the secret file \/etc\/warmpool\/secrets\/hf_token/);
});

t.test('status shows the timed stages and warming instances (issue 16)', async (t) => {
  const inst = (id: string, state: string, extra: object = {}) => [id, v({ id, service: 'ollama', host: 'h1', state, address: 'a', containerId: '', slot: null, createdAt: 0, readyAt: null, bootMs: null, ...extra })] as const;
  const stages = (createMs: number, bootMs: number, warmupMs: number) => ({ bootMs, stages: { createMs, bootMs, warmupMs } });
  const cache = {
    services: new Map([['ollama', v({ name: 'ollama', warm: 2 })]]),
    hosts: new Map(),
    instances: new Map([inst('a', 'ready', stages(1000, 2000, 30_000)), inst('b', 'claimed', stages(3000, 4000, 32_000)), inst('c', 'warming', { createdAt: 80_000 })]),
    claims: new Map(),
    sessions: new Map(),
    drains: new Set(),
  };
  const s = computeStatus(cache as never, 100_000);
  t.match(s.services[0], { booting: 1, warming: 1, typicalBootMs: 4000 });
  t.same(s.services[0]!.typicalStages, { pullMs: null, createMs: 3000, bootMs: 4000, warmupMs: 32_000, startMs: 39_000 });
  t.equal(s.services[0]!.boots[0]!.progress, 20_000 / 39_000, 'progress against the whole start, warm-up included');
  const text = renderStatus(s);
  t.match(text, /STAGES[^\n]*\nSERVICE\s+PULL\s+CREATE\s+BOOT\s+WARM-UP\s+TO READY\nollama\s+-\s+3\.0s\s+4\.0s\s+32\.0s\s+39\.0s/);
  t.match(text, /ollama\s+c\s+h1\s+warming\s+20\.0s\s+51%/);
});

t.test('status shows pulls with bytes, which hosts have each image, and failure reasons', async (t) => {
  const image = '127.0.0.1:5000/warmpool/chat:v1';
  const inst = (id: string, state: string, extra: object = {}) => [id, v({ id, service: 'chat', host: 'h1', state, address: '', containerId: '', slot: null, createdAt: 0, readyAt: null, bootMs: null, ...extra })] as const;
  const cache = {
    services: new Map([['chat', v({ name: 'chat', warm: 2, image })]]),
    hosts: new Map([
      ['h1', v({ id: 'h1', address: '127.0.0.1', capacity: { instances: 8, memoryMb: 0 }, draining: false, images: { [image]: { state: 'pulling', bytesDone: 5e6, bytesTotal: 2e7, percent: 25, at: 1 } } })],
      ['h2', v({ id: 'h2', address: '127.0.0.1', capacity: { instances: 8, memoryMb: 0 }, draining: false, images: { [image]: { state: 'present', at: 1 } } })],
      ['h3', v({ id: 'h3', address: '127.0.0.1', capacity: { instances: 8, memoryMb: 0 }, draining: false })],
      ['h4', v({ id: 'h4', address: '127.0.0.1', capacity: { instances: 8, memoryMb: 0 }, draining: false, images: { [image]: { state: 'failed', reason: `pull of ${image} failed (auth): unauthorized: authentication required`, at: 1 } } })],
    ]),
    instances: new Map([
      inst('p1', 'pulling', { pull: { image, bytesDone: 5e6, bytesTotal: 2e7, percent: 25 } }),
      inst('f1', 'failed', { host: 'h3', reason: `pull of ${image} failed (auth): unauthorized: authentication required` }),
    ]),
    claims: new Map(), sessions: new Map(), drains: new Set(),
  };
  const s = computeStatus(cache as never, 100_000);
  t.match(s.services[0], { pulling: 1, imagePresentOn: 1, image });
  t.same(s.services[0]!.imageHosts.map((h) => h.state), ['pulling', 'present', 'absent', 'failed']);
  const text = renderStatus(s);
  t.match(text, /chat\s+2\s+0\s+0\s+1\s+0\s+1\s+-\s+1\s+1\/4 hosts/, 'PULLING and IMAGE ON columns (a pulling instance counts as starting, BOOTING)');
  t.match(text, /PULLING\n.*\nchat\s+p1\s+h1\s+25%\s+5\.0 MB \/ 20\.0 MB/);
  t.match(text, /h1\s+pulling 25%/);
  t.match(text, /h2\s+present/);
  t.match(text, /h3\s+absent/);
  t.match(text, /h4\s+failed: pull of .* failed \(auth\): unauthorized: authentication required/, 'a failed pull with the registry\'s reason');
});

import t from 'tap';
import { parseServicesFile } from '../src/service-spec.js';
import { placementAllows } from '../src/container-options.js';

const one = (extra: object) => parseServicesFile({ services: [{ name: 'vllm', image: 'vllm/vllm-openai', ...extra }] });
const problems = (extra: object): string[] => {
  const r = one(extra);
  return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`);
};

t.test('container options: Docker / Compose forms, normalised', async (t) => {
  const r = one({
    command: ['--model', 'x'], entrypoint: ['python3'], shmSizeMb: 1024, ipc: 'host', user: '1000:1000',
    volumes: ['/data/models:/models:ro', 'hf-cache:/root/.cache/huggingface', { source: '/a', target: '/b' }],
    ulimits: { memlock: -1, nofile: { soft: 1024, hard: 4096 } }, secretEnv: { HF_TOKEN: '/etc/warmpool/secrets/hf_token' },
    resources: { gpus: 2 }, placement: { hostLabels: { gpu: 'h100' } },
  });
  t.ok(r.ok);
  if (!r.ok) return;
  const s = r.services[0]!;
  t.same(s.volumes, [
    { source: '/data/models', target: '/models', readOnly: true },
    { source: 'hf-cache', target: '/root/.cache/huggingface', readOnly: false },
    { source: '/a', target: '/b', readOnly: false },
  ]);
  t.same(s.ulimits, { memlock: { soft: -1, hard: -1 }, nofile: { soft: 1024, hard: 4096 } });
  t.equal(s.resources.gpus, 2);
  t.same(s.placement, { hostLabels: { gpu: 'h100' } });
  const d = one({});
  if (d.ok) {
    t.equal(d.services[0]!.resources.gpus, 0, 'gpus default to 0');
    t.same([d.services[0]!.volumes, d.services[0]!.secretEnv, d.services[0]!.placement], [[], {}, { hostLabels: {} }]);
  }
});

t.test('container options: errors name the field path', async (t) => {
  t.match(problems({ volumes: ['/data'] }), [/^services\[0\]\.volumes\[0\]: .*SOURCE:TARGET/]);
  t.match(problems({ volumes: ['/a/../etc:/x'] }), [/^services\[0\]\.volumes\[0\]\.source: an absolute host path/]);
  t.match(problems({ volumes: ['/a:/x', 'vol:/x'] }), [/^services\[0\]\.volumes\[1\]\.target: \/x is mounted twice/]);
  t.match(problems({ ipc: 'none' }), [/^services\[0\]\.ipc: /]);
  t.match(problems({ shmSizeMb: 0 }), [/^services\[0\]\.shmSizeMb: /]);
  t.match(problems({ ulimits: { memlock: -2 } }), [/^services\[0\]\.ulimits\.memlock/]);
  // The engine accepted these and every start failed (a pod recreated in a loop, found by a helper).
  t.match(problems({ ulimits: { bogus: 5 } }), [/^services\[0\]\.ulimits\.bogus: a ulimit name: core, cpu/]);
  t.match(problems({ ulimits: { nofile: { soft: 4096, hard: 1024 } } }), [/^services\[0\]\.ulimits\.nofile\.soft: soft must not exceed hard/]);
  t.match(problems({ ulimits: { nofile: { soft: -1, hard: 1024 } } }), [/soft must not exceed hard/], 'unlimited soft under a finite hard');
  t.same(problems({ ulimits: { nofile: { soft: 1024, hard: -1 }, stack: -1 } }), [], 'a finite soft under an unlimited hard is fine');
  t.match(problems({ resources: { gpus: 1.5 } }), [/^services\[0\]\.resources\.gpus: /]);
  t.match(problems({ secretEnv: { HF_TOKEN: 'relative' } }), [/^services\[0\]\.secretEnv\.HF_TOKEN: must be an absolute path/]);
  t.match(problems({ env: { HF_TOKEN: 'x' }, secretEnv: { HF_TOKEN: '/s' } }), [/^services\[0\]\.secretEnv\.HF_TOKEN: HF_TOKEN is set in env too/]);
  t.match(problems({ user: 'a b' }), [/^services\[0\]\.user: /]);
  t.match(problems({ command: 'vllm serve' }), [/^services\[0\]\.command: /]);
});

t.test('placement: every host label asked for must match', async (t) => {
  t.ok(placementAllows({ hostLabels: {} }, {}));
  t.ok(placementAllows({ hostLabels: { gpu: 'h100' } }, { gpu: 'h100', zone: 'a' }));
  t.notOk(placementAllows({ hostLabels: { gpu: 'h100' } }, { gpu: 'a100' }));
  t.notOk(placementAllows({ hostLabels: { gpu: 'h100' } }, {}));
});

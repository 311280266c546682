import t from 'tap';
import { resolveAgentConfig } from '../src/config.js';
import { agentConfigFromArgs } from '../src/run.js';
import { AgentError } from '../src/errors.js';

t.test('defaults, then file < env < flags', async (t) => {
  const d = resolveAgentConfig({});
  t.equal(d.registry.prefix, '/warmpool/');
  t.equal(d.runDir, '/run/warmpool');
  t.equal(d.leaseTtlSec, 10);
  t.equal(d.sidecar.image, 'warmpool/sidecar');
  t.ok(d.capacity.memoryMb > 0, 'memory capacity defaults to 90 % of the machine');
  const c = resolveAgentConfig({
    file: { hostId: 'from-file', address: '10.0.0.5', capacity: { instances: 4 }, labels: { zone: 'a' } },
    env: { WARMPOOL_HOST_ID: 'from-env', WARMPOOL_LEASE_TTL: '3' },
    flags: { 'host-id': 'from-flag', label: ['gpu=1', 'rack=r2'] },
  });
  t.equal(c.hostId, 'from-flag');
  t.equal(c.address, '10.0.0.5');
  t.equal(c.capacity.instances, 4);
  t.equal(c.leaseTtlSec, 3);
  t.same(c.labels, { gpu: '1', rack: 'r2' }, 'flag labels replace the file\'s');
});

t.test('errors name the setting', async (t) => {
  t.throws(() => resolveAgentConfig({ flags: { instances: 'many' } }), { code: 'WARMPOOL_INVALID_CONFIG', message: /--instances: expected a number/ });
  t.throws(() => resolveAgentConfig({ file: { capacity: { instances: -1 } } }), { message: /capacity\.instances/ });
  t.throws(() => resolveAgentConfig({ file: { bogus: 1 } }), { message: /bogus|Unrecognized/ });
  t.throws(() => resolveAgentConfig({ flags: { label: ['nokey'] } }), { message: /KEY=VALUE/ });
  t.throws(() => agentConfigFromArgs(['--nope'], {}), AgentError);
});

t.test('command-line parsing', async (t) => {
  t.equal(agentConfigFromArgs(['--help'], {}), 'help');
  const c = agentConfigFromArgs(['--etcd', 'http://127.0.0.1:2379', '--host-id', 'h7', '--lease-ttl', '2', '--label', 'a=b'], { WARMPOOL_PREFIX: '/x/' });
  t.not(c, 'help');
  if (c === 'help') return;
  t.equal(c.registry.etcd, 'http://127.0.0.1:2379');
  t.equal(c.registry.prefix, '/x/');
  t.equal(c.hostId, 'h7');
  t.equal(c.leaseTtlSec, 2);
  t.same(c.labels, { a: 'b' });
});

t.test('host allow-list and GPU inventory settings', async (t) => {
  const d = resolveAgentConfig({});
  t.same(d.allow, { hostPaths: [], ipcHost: false, secretDirs: ['/etc/warmpool/secrets'], volumes: [] }, 'nothing of the host by default');
  t.same(d.gpus, { detect: true }, 'nvidia-smi detection unless devices are configured');
  const c = resolveAgentConfig({
    file: { allow: { hostPaths: ['/data'], volumes: ['x'] }, gpus: { devices: ['0', { id: '1', name: 'H100' }] } },
    env: { WARMPOOL_ALLOW_IPC_HOST: 'true', WARMPOOL_SECRET_DIRS: '/run/secrets' },
    flags: { 'allow-host-path': ['/models', '/cache'], 'allow-volume': ['models', 'hf-*'], 'gpu-detect': 'false' },
  });
  t.same(c.allow, { hostPaths: ['/models', '/cache'], ipcHost: true, secretDirs: ['/run/secrets'], volumes: ['models', 'hf-*'] });
  t.same(c.gpus, { detect: false, devices: [{ id: '0' }, { id: '1', name: 'H100' }] });
  t.same(resolveAgentConfig({ flags: { gpus: '0,1,2' } }).gpus.devices, [{ id: '0' }, { id: '1' }, { id: '2' }]);
  t.same(agentConfigFromArgs(['--gpus', '0,1', '--allow-host-path', '/a', '--allow-host-path', '/b'], {}) !== 'help' && [], []);
  const args = agentConfigFromArgs(['--gpus', '3', '--allow-host-path', '/a', '--allow-host-path', '/b'], {});
  if (args !== 'help') t.same([args.gpus.devices, args.allow.hostPaths], [[{ id: '3' }], ['/a', '/b']], 'list flags repeat');
  t.throws(() => resolveAgentConfig({ flags: { 'allow-ipc-host': 'maybe' } }), { message: /--allow-ipc-host: expected true or false/ });
  t.throws(() => resolveAgentConfig({ flags: { 'allow-host-path': 'relative' } }), { message: /allow\.hostPaths\.0: must be an absolute path/ });
  t.throws(() => resolveAgentConfig({ flags: { 'allow-volume': '/var/x' } }), { message: /allow\.volumes\.0: a volume name or a glob/ });
  t.same(resolveAgentConfig({ env: { WARMPOOL_ALLOW_VOLUMES: 'a,b*' } }).allow.volumes, ['a', 'b*'], 'WARMPOOL_ALLOW_VOLUMES');
});

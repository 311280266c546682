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

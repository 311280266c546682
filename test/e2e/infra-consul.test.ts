// Foundation: a private Consul agent, the consul client (v2) and Consul DNS do what
// discovery relies on: a service instance with a TTL check is listed (HTTP and DNS)
// only while its check passes.
import t from 'tap';
import Consul from 'consul';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { eventually, infraSkip, startConsul } from '../src/index.js';

const exec = promisify(execFile);

interface HealthEntry {
  Service: { ID: string; Port: number };
}

/** SRV answers for a name from the agent's DNS interface: "priority weight port target" lines. */
async function digSrv(dnsPort: number, name: string): Promise<string[]> {
  const { stdout } = await exec('dig', ['@127.0.0.1', '-p', String(dnsPort), name, 'SRV', '+short', '+time=2', '+tries=1'], {
    timeout: 10_000,
  });
  return stdout.split('\n').map((l) => l.trim()).filter(Boolean);
}

function srvPorts(lines: string[]): number[] {
  return lines.map((l) => Number(l.split(/\s+/)[2])).sort((a, b) => a - b);
}

t.test('consul: TTL-checked service instances in the catalog and in DNS', { skip: infraSkip('consul', 'dig') }, async (t) => {
  const agent = await startConsul();
  t.teardown(() => agent.stop());
  const consul = new Consul({ host: '127.0.0.1', port: agent.httpPort });

  const register = (id: string, port: number) =>
    consul.agent.service.register({
      name: 'chatbot',
      id,
      address: '127.0.0.1',
      port,
      check: { checkid: `${id}:ttl`, name: `${id} ready`, ttl: '30s', timeout: '1s' },
    });
  await register('chatbot-1', 18001);
  await register('chatbot-2', 18002);

  const passing = async (): Promise<string[]> => {
    const entries = (await consul.health.service({ service: 'chatbot', passing: true })) as HealthEntry[];
    return entries.map((e) => e.Service.ID).sort();
  };

  await t.test('no check has passed yet: nothing is listed', async (t) => {
    const all = (await consul.health.service({ service: 'chatbot' })) as HealthEntry[];
    t.equal(all.length, 2, 'both instances are registered');
    t.same(await passing(), [], 'neither passes before its TTL check is passed');
  });

  await t.test('passing one check lists that instance only', async (t) => {
    await consul.agent.check.pass({ id: 'chatbot-1:ttl', note: 'model loaded' });
    t.same(await eventually(async () => {
      const ids = await passing();
      return ids.length > 0 ? ids : false;
    }, { what: 'chatbot-1 passing' }), ['chatbot-1']);

    const lines = await eventually(async () => {
      const l = await digSrv(agent.dnsPort, 'chatbot.service.consul');
      return l.length > 0 ? l : false;
    }, { timeoutMs: 10_000, what: 'SRV answer' });
    t.same(srvPorts(lines), [18001], `DNS answers with chatbot-1 only: ${lines.join(' | ')}`);
    t.match(lines[0], /\.consul\.$/, 'the SRV target is a consul node name');
  });

  await t.test('DNS follows the checks both ways', async (t) => {
    await consul.agent.check.pass({ id: 'chatbot-2:ttl' });
    await eventually(async () => srvPorts(await digSrv(agent.dnsPort, 'chatbot.service.consul')).join() === '18001,18002', {
      timeoutMs: 10_000,
      what: 'both instances in DNS',
    });
    t.pass('both instances answer once both checks pass');
    await consul.agent.check.fail({ id: 'chatbot-1:ttl', note: 'gone' });
    await eventually(async () => srvPorts(await digSrv(agent.dnsPort, 'chatbot.service.consul')).join() === '18002', {
      timeoutMs: 10_000,
      what: 'chatbot-1 leaves DNS',
    });
    t.same(await passing(), ['chatbot-2'], 'a failed check drops the instance from health and DNS');
  });
});

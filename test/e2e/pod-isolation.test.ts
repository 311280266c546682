// The app's port is reachable only through its sidecar, even when the app listens on
// 0.0.0.0: the pod's network namespace is filtered before the app starts. On a Docker network
// this test creates (its own subnet, removed in teardown), a few bounded requests from the host
// and from a container the test starts there reach the sidecar's port and are refused on the
// app's; the app still answers through its sidecar for the claiming session.
import t from 'tap';
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { CREDENTIAL_HEADER, instanceKey, newSessionId, sessionCredential } from '@warmpool/registry';
import { infraSkip } from '../src/index.js';
import { AgentHarness, chatSpec, docker, requireImages } from './fixtures/agent-harness.js';

/** A network of our own on a free /24 under 10.0.0.0/8 (a taken subnet is retried, 5 times at most). */
async function createNetwork(name: string): Promise<string> {
  for (let i = 0; ; i++) {
    const subnet = `10.${randomInt(180, 250)}.${randomInt(0, 256)}.0/24`;
    try {
      await docker('network', 'create', '--subnet', subnet, '--label', `warmpool-test=${name}`, name);
      return subnet;
    } catch (err) {
      if (i >= 4 || !/overlap/i.test(String((err as { stderr?: string }).stderr ?? err))) throw err;
    }
  }
}

/** Node script for the client container: one GET per URL (3 s each at most), results as JSON. */
const CLIENT = `
const http = require('http');
const get = (u) => new Promise((res) => {
  const r = http.get(u, { timeout: 3000 }, (x) => { x.resume(); res({ status: x.statusCode }); });
  r.on('timeout', () => r.destroy(new Error('timeout')));
  r.on('error', (e) => res({ error: e.code || e.message }));
});
(async () => { const out = []; for (const u of process.argv.slice(1)) out.push(await get(u)); console.log(JSON.stringify(out)); })();
`;

async function fromHost(url: string): Promise<{ status?: number; error?: string }> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(3000) });
    await r.arrayBuffer();
    return { status: r.status };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    return { error: cause?.code ?? (err as Error).name };
  }
}

t.test('the app port is refused from the host and from other containers; the sidecar still reaches it', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const h = await AgentHarness.create(t);
  const net = `wp-iso-${h.id}`;
  await createNetwork(net);
  t.teardown(async () => {
    // Containers first (the harness' own check then finds none), then the network.
    await docker('ps', '-aq', '--filter', `label=warmpool-test=${net}`).then((ids) => ids.trim() && docker('rm', '-f', ...ids.trim().split('\n'))).catch(() => undefined);
    await docker('ps', '-aq', '--filter', `label=warmpool.cluster=${h.cluster}`).then((ids) => ids.trim() && docker('rm', '-f', '-v', ...ids.trim().split('\n'))).catch(() => undefined);
    await docker('network', 'rm', net).catch(() => undefined);
  });

  await h.startAgent('host-iso', { network: net });
  // HOST=0.0.0.0: the demo listens on every address of the pod, as vLLM & co. do.
  await h.putService(chatSpec({ warm: 1, env: { BOOT_SECONDS: '1', HOST: '0.0.0.0' } }));
  const [inst] = await h.waitReady(1);
  const [sidecarId] = await h.containers({ 'warmpool.instance': inst!.id, 'warmpool.role': 'sidecar' });
  const info = JSON.parse(await docker('inspect', sidecarId!))[0] as { State: { Pid: number }; NetworkSettings: { Networks: Record<string, { IPAddress: string }> } };
  const ip = info.NetworkSettings.Networks[net]?.IPAddress;
  t.match(ip, /^10\.\d+\.\d+\.\d+$/, 'the pod is on the test\'s network');

  // /proc/PID/net/tcp of the pod: the app listens on 0.0.0.0:8000 (hex 1F40, state 0A = LISTEN).
  const listening = readFileSync(`/proc/${info.State.Pid}/net/tcp`, 'utf8').split('\n').some((l) => /^\s*\d+: 00000000:1F40 00000000:0000 0A /.test(l));
  t.ok(listening, 'the app binds 0.0.0.0:8000');

  t.match(await fromHost(`http://${ip}:8000/health`), { error: 'ECONNREFUSED' }, 'host -> app port: refused');
  t.same(await fromHost(`http://${ip}:9000/_warmpool/status`), { status: 200 }, 'host -> sidecar port: answers');

  const out = await docker('run', '--rm', '--network', net, '--label', `warmpool-test=${net}`, '--entrypoint', '/usr/bin/node',
    'warmpool/chatbot-demo', '-e', CLIENT, `http://${ip}:8000/health`, `http://${ip}:9000/_warmpool/status`);
  const [toApp, toSidecar] = JSON.parse(out.trim().split('\n').pop()!) as { status?: number; error?: string }[];
  t.same(toApp, { error: 'ECONNREFUSED' }, 'another container -> app port: refused');
  t.same(toSidecar, { status: 200 }, 'another container -> sidecar port: answers');

  const claim = await h.registry.claim({ service: 'chat', sessionId: newSessionId() });
  t.ok(claim.ok);
  if (!claim.ok) return;
  const cred = sessionCredential(instanceKey(await h.registry.clusterSecret(), inst!.id), claim.session.id);
  const through = await fetch(`http://${inst!.address}/v1/models`, { headers: { [CREDENTIAL_HEADER]: cred }, signal: AbortSignal.timeout(5000) });
  t.equal(through.status, 200, 'the app answers through its sidecar');
  t.match(await through.json(), { object: 'list' });
});

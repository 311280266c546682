// The sidecar in front of an agent-launched app: the app's port is not published, requests
// without the claiming session's credential get 403, with it they reach the app (streaming
// included), and once pinned another session's valid credential is refused.
import t from 'tap';
import { instanceKey, newSessionId, sessionCredential, CREDENTIAL_HEADER } from '@warmpool/registry';
import { infraSkip } from '../src/index.js';
import { AgentHarness, chatSpec, docker, requireImages } from './fixtures/agent-harness.js';

t.test('sidecar credential gate on a real instance', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const h = await AgentHarness.create(t);
  await h.startAgent('host-a');
  await h.putService(chatSpec({ warm: 1 }));
  const [inst] = await h.waitReady(1);
  const url = `http://${inst!.address}`;
  t.match(inst!.address, /^127\.0\.0\.1:\d+$/, 'published on the host address only');

  const [appId] = await h.containers({ 'warmpool.instance': inst!.id, 'warmpool.role': 'app' });
  const [sidecarId] = await h.containers({ 'warmpool.instance': inst!.id, 'warmpool.role': 'sidecar' });
  const ports = JSON.parse(await docker('inspect', '-f', '{{json .NetworkSettings.Ports}}', sidecarId!)) as Record<string, unknown>;
  t.same(Object.keys(ports), ['9000/tcp'], 'only the sidecar port is published, never the app\'s 8000');
  const sidecarFullId = (await docker('inspect', '-f', '{{.Id}}', sidecarId!)).trim();
  t.equal((await docker('inspect', '-f', '{{.HostConfig.NetworkMode}}', appId!)).trim(), `container:${sidecarFullId}`, 'the app is in its sidecar\'s network namespace');

  const noCred = await fetch(`${url}/v1/models`);
  t.equal(noCred.status, 403);
  t.same(((await noCred.json()) as { error: { code: string } }).error.code, 'WARMPOOL_FORBIDDEN');
  const forged = await fetch(`${url}/v1/models`, { headers: { [CREDENTIAL_HEADER]: `${newSessionId()}.Zm9yZ2Vk` } });
  t.equal(forged.status, 403, 'a forged credential');

  const claim = await h.registry.claim({ service: 'chat', sessionId: newSessionId() });
  t.ok(claim.ok);
  if (!claim.ok) return;
  t.equal(claim.instance.id, inst!.id);
  const secret = await h.registry.clusterSecret();
  const key = instanceKey(secret, inst!.id);
  const cred = sessionCredential(key, claim.session.id);
  const ok = await fetch(`${url}/v1/models`, { headers: { [CREDENTIAL_HEADER]: cred } });
  t.equal(ok.status, 200, 'the claiming session reaches the app');
  t.match(await ok.json(), { object: 'list' });

  const stream = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST', headers: { [CREDENTIAL_HEADER]: cred, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'warmpool-demo', stream: true, messages: [{ role: 'user', content: 'hello there' }] }),
  });
  t.equal(stream.status, 200);
  t.match(stream.headers.get('content-type'), /text\/event-stream/);
  const text = await stream.text();
  t.ok((text.match(/^data: /gm) ?? []).length > 2, 'several SSE events came through');
  t.match(text, /data: \[DONE\]/);

  const other = await fetch(`${url}/v1/models`, { headers: { [CREDENTIAL_HEADER]: sessionCredential(key, newSessionId()) } });
  t.equal(other.status, 403, 'another session, validly signed, is refused once one is pinned');
  const otherInstance = await fetch(`${url}/v1/models`, { headers: { [CREDENTIAL_HEADER]: sessionCredential(instanceKey(secret, 'some-other-instance'), claim.session.id) } });
  t.equal(otherInstance.status, 403, 'a credential issued for another instance');
});

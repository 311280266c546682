// Registry credentials go only to the registry they were chosen for. A Docker Hub login must
// not reach a host named inside a Hub reference: `docker.io/127.0.0.1:PORT/x` is a Hub image
// whose path begins with a host-like name, and the agent once sent it to the engine without
// its `docker.io/` prefix, so the engine pulled from 127.0.0.1:PORT with the Hub password.
// Real engine, a fake registry on 127.0.0.1 that records every request's Authorization.
import t from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { DockerodeRuntime } from '@warmpool/agent';
import { authFromConfig } from '@warmpool/agent/registry-auth';
import { infraSkip } from '../src/index.js';

const HUB_PASSWORD = 'hub-password-must-stay-home';
const config = { auths: { 'https://index.docker.io/v1/': { auth: Buffer.from(`hubuser:${HUB_PASSWORD}`).toString('base64') } } };

t.test('a Docker Hub login never reaches a host named in a Hub reference', { skip: infraSkip('docker') }, async (t) => {
  const seen: { url: string; authorization: string | undefined }[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', authorization: req.headers.authorization });
    res.writeHead(401, { 'www-authenticate': 'Basic realm="fake"', 'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0' });
    res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const runtime = new DockerodeRuntime();
  const pull = async (image: string): Promise<string> => {
    const auth = authFromConfig(config, image);
    try {
      await runtime.pull(image, { ...(auth ? { auth } : {}), signal: AbortSignal.timeout(30_000) });
      return 'pulled';
    } catch (err) {
      return (err as Error).message;
    }
  };

  // The fake registry is reachable by the engine: a pull naming it directly gets there.
  const direct = await pull(`127.0.0.1:${port}/wp-auth-probe:v1`);
  t.ok(seen.length > 0, `the engine reached the fake registry directly (${seen.length} requests; ${direct.slice(0, 120)})`);
  t.ok(seen.every((s) => s.authorization === undefined), 'no credentials for a registry the config file has none for');
  seen.length = 0;

  // A Hub reference whose path starts with that host: the Hub login is chosen for it. The
  // engine refuses it at once (a port is no part of a Hub path), so no traffic leaves.
  const image = `docker.io/127.0.0.1:${port}/wp-auth-probe:v1`;
  t.ok(authFromConfig(config, image), `${image} is a Docker Hub reference (its login applies)`);
  const result = await pull(image);
  t.not(result, 'pulled', `the pull fails: ${result.slice(0, 160)}`);
  const leaked = seen.filter((s) => s.authorization !== undefined && Buffer.from(s.authorization.replace(/^Basic /, ''), 'base64').toString().includes(HUB_PASSWORD));
  t.same(leaked, [], 'the Hub password never reached 127.0.0.1');
  t.same(seen.map((s) => s.url), [], 'the engine did not pull from the host in the path at all');
});

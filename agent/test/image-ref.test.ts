// Pure parts of image pulls: references, failure kinds, layer progress, credentials from a
// Docker config file.
import t from 'tap';
import { classifyPullError, fromImage, parseImageRef, PullProgressCounter } from '../src/image-ref.js';
import { authFromConfig, registryKey } from '../src/registry-auth.js';

t.test('image references as Docker reads them', async (t) => {
  t.same(parseImageRef('warmpool/chatbot-demo'), { registry: 'docker.io', repository: 'warmpool/chatbot-demo', tag: 'latest', digest: false });
  t.same(parseImageRef('ubuntu:22.04'), { registry: 'docker.io', repository: 'library/ubuntu', tag: '22.04', digest: false });
  t.same(parseImageRef('127.0.0.1:5000/warmpool/chat:v1'), { registry: '127.0.0.1:5000', repository: 'warmpool/chat', tag: 'v1', digest: false });
  t.same(parseImageRef('localhost/x'), { registry: 'localhost', repository: 'x', tag: 'latest', digest: false });
  t.same(parseImageRef('nvcr.io/nim/meta/llama3@sha256:abc'), { registry: 'nvcr.io', repository: 'nim/meta/llama3', tag: 'sha256:abc', digest: true });
  t.equal(parseImageRef('reg:5000/a').tag, 'latest', 'a registry port is not a tag');
});

t.test('pull failures are classified from the registry\'s own words', async (t) => {
  t.equal(classifyPullError('Head "http://127.0.0.1:5000/v2/x/manifests/v1": no basic auth credentials'), 'auth');
  t.equal(classifyPullError('unauthorized: authentication required'), 'auth');
  t.equal(classifyPullError('manifest for 127.0.0.1:5000/x:nope not found: manifest unknown: manifest unknown'), 'not-found');
  t.equal(classifyPullError('Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused'), 'unreachable');
  t.equal(classifyPullError('write /var/lib/docker/tmp/x: no space left on device'), 'disk-full');
  t.equal(classifyPullError('something else'), 'other');
});

t.test('layer progress sums the layers the engine announces', async (t) => {
  const c = new PullProgressCounter();
  t.same(c.bytes(), { done: 0, total: null });
  c.feed({ status: 'Pulling fs layer', id: 'a' });
  t.same(c.bytes(), { done: 0, total: null }, 'no size before a download starts');
  t.ok(c.feed({ status: 'Downloading', id: 'a', progressDetail: { current: 10, total: 100 } }));
  c.feed({ status: 'Downloading', id: 'b', progressDetail: { current: 5, total: 50 } });
  t.same(c.bytes(), { done: 15, total: 150 });
  c.feed({ status: 'Download complete', id: 'a' });
  c.feed({ status: 'Already exists', id: 'c' });
  c.feed({ status: 'Digest: sha256:x' });
  t.same(c.bytes(), { done: 105, total: 150 });
});

t.test('credentials from the auths section of a Docker config file', async (t) => {
  const config = {
    auths: {
      '127.0.0.1:5000': { auth: Buffer.from('alice:s3cr:et').toString('base64') },
      'https://index.docker.io/v1/': { username: 'bob', password: 'pw' },
      'http://reg.example:443/': { identitytoken: 'tok' },
    },
    credsStore: 'desktop',
  };
  t.same(authFromConfig(config, '127.0.0.1:5000/warmpool/chat:v1'), { serveraddress: '127.0.0.1:5000', username: 'alice', password: 's3cr:et' }, 'a password may hold a colon');
  t.same(authFromConfig(config, 'ubuntu'), { serveraddress: 'https://index.docker.io/v1/', username: 'bob', password: 'pw' });
  t.same(authFromConfig(config, 'reg.example:443/a/b'), { serveraddress: 'reg.example:443', identitytoken: 'tok' });
  t.equal(authFromConfig(config, 'localhost:5000/x'), undefined, 'another registry: anonymous');
  t.equal(authFromConfig({}, 'ubuntu'), undefined);
  t.equal(authFromConfig(null, 'ubuntu'), undefined);
  t.equal(registryKey('HTTPS://Registry-1.Docker.io/v2/'), 'docker.io');
});

t.test('fromImage keeps the registry the reference names, Docker Hub included', async (t) => {
  t.equal(fromImage(parseImageRef('ubuntu:22.04')), 'docker.io/library/ubuntu');
  t.equal(fromImage(parseImageRef('warmpool/chatbot-demo')), 'docker.io/warmpool/chatbot-demo');
  t.equal(fromImage(parseImageRef('127.0.0.1:5000/warmpool/chat:v1')), '127.0.0.1:5000/warmpool/chat');
  // A Hub path whose first part looks like a host: sent without docker.io/, the engine
  // would read that host as the registry (and the Hub login would go there).
  for (const ref of ['docker.io/127.0.0.1/x', 'docker.io/127.0.0.1:5055/x:latest', 'docker.io/evil.example/x', 'docker.io/localhost/x']) {
    const sent = fromImage(parseImageRef(ref));
    t.equal(parseImageRef(sent).registry, 'docker.io', `${ref} is pulled as ${sent}, from Docker Hub`);
  }
});

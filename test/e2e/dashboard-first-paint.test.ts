// The dashboard's first paint is the fleet: the page carries the state it was served with,
// so it is full even before (or without) its event stream; instance chips show whole ids.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';
import { Registry, parseServiceSpec } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { buildRouter } from '@warmpool/router';
import { startEtcd, infraSkip, chromiumMissing, chromiumPath } from '../src/index.js';

t.test('dashboard: full on first paint, with no event stream at all; whole instance ids', { skip: infraSkip('etcd') || chromiumMissing() }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const store = new EtcdKvStore({ endpoints: etcd.endpoints });
  const reg = new Registry(store, { prefix: `/dash-${randomBytes(3).toString('hex')}/` });
  t.teardown(async () => { await reg.close(); await store.close(); });
  const spec = parseServiceSpec({ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 2 });
  if (!spec.ok) throw new Error('spec');
  await reg.putService(spec.spec);
  const host = await reg.openHost({ id: 'host-a', address: '127.0.0.1', capacity: { instances: 8, memoryMb: 0 }, labels: {}, draining: false, startedAt: Date.now(), agentVersion: 't' });
  t.teardown(() => host.close({ revoke: true }));
  const ids = ['chatbot-0123456789', 'chatbot-abcdefabcd'];
  for (const [i, id] of ids.entries()) {
    await host.putInstance({ id, service: 'chatbot', host: 'host-a', state: 'ready', address: `127.0.0.1:${45000 + i}`, containerId: '', slot: null, createdAt: Date.now() - 20_000, readyAt: Date.now(), bootMs: 20_000 });
  }
  const router = buildRouter({ registry: reg });
  t.teardown(() => router.close());
  await router.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(router.server.address() as { port: number }).port}`;
  await (await fetch(`${url}/v1/dashboard/state`)).json(); // the router has listed the registry

  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  // The event stream never answers: whatever shows came with the page itself.
  await page.route('**/v1/dashboard/events*', (route) => route.abort());
  await page.goto(`${url}/dashboard`, { waitUntil: 'domcontentloaded' });
  const text = async (sel: string) => (await page.locator(sel).first().textContent({ timeout: 2_000 }))?.trim();
  t.equal(await text('[data-service="chatbot"] .n-ready'), '2', 'ready count on first paint');
  t.equal(await text('#k-ready'), '2', 'header figure on first paint');
  const chips = await page.locator('.chip').allTextContents();
  t.equal(chips.length, 2, 'both instances');
  for (const id of ids) t.ok(chips.some((c) => c.includes(id)), `chip shows the whole id ${id}`);
});

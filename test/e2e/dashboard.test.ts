import t from 'tap';
import { mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';
import { Registry, parseServiceSpec } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { buildRouter } from '@warmpool/router';
import { startEtcd, infraSkip, eventually, repoRoot, infraMissing, chromiumMissing, chromiumPath } from '../src/index.js';

t.test('dashboard in headless Chromium shows the pool change when a session is claimed', { skip: infraSkip('etcd') || chromiumMissing() }, async (t) => {
  void infraMissing;
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const store = new EtcdKvStore({ endpoints: etcd.endpoints });
  const reg = new Registry(store, { prefix: `/dash-${randomBytes(3).toString('hex')}/` });
  t.teardown(async () => { await reg.close(); await store.close(); });
  const spec = parseServiceSpec({ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 3 });
  if (!spec.ok) throw new Error('spec');
  await reg.putService(spec.spec);
  const host = await reg.openHost({ id: 'host-a', address: '127.0.0.1', capacity: { instances: 8, memoryMb: 0 }, labels: {}, draining: false, startedAt: Date.now(), agentVersion: 't' });
  t.teardown(() => host.close({ revoke: true }));
  for (let i = 0; i < 3; i++) {
    await host.putInstance({ id: `inst-${i}`, service: 'chatbot', host: 'host-a', state: 'ready', address: `127.0.0.1:${45000 + i}`, containerId: '', slot: null, createdAt: Date.now() - 20_000, readyAt: Date.now(), bootMs: 20_000 });
  }
  await host.putInstance({ id: 'inst-b', service: 'chatbot', host: 'host-a', state: 'booting', address: '127.0.0.1:45009', containerId: '', slot: null, createdAt: Date.now() - 5_000, readyAt: null, bootMs: null });

  const router = buildRouter({ registry: reg });
  t.teardown(() => router.close());
  await router.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(router.server.address() as { port: number }).port}`;

  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  await page.goto(`${url}/dashboard`);
  const text = async (sel: string) => (await page.locator(sel).first().textContent({ timeout: 2_000 }))?.trim();
  await eventually(async () => (await text('[data-service="chatbot"] .n-ready')) === '3', { timeoutMs: 15_000, what: 'page shows 3 ready' });
  t.equal(await page.locator('.chip[data-state="booting"]').count(), 1, 'the booting instance shows');
  // The first paint comes from the snapshot; the event stream connects just after.
  await eventually(async () => /live/.test((await text('#conn')) ?? ''), { timeoutMs: 15_000, what: 'the event stream connected' });
  t.match(await text('#conn'), /live/, 'the event stream is live');

  const res = await fetch(`${url}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service: 'chatbot' }) });
  t.equal(res.status, 201);
  await eventually(async () => (await text('[data-service="chatbot"] .n-ready')) === '2' && (await text('[data-service="chatbot"] .n-claimed')) === '1', { timeoutMs: 15_000, what: 'page shows the claim' });
  t.equal(await page.locator('.chip[data-state="claimed"]').count(), 1, 'one claimed chip');
  t.equal(await text('#k-sessions'), '1', 'session count updated live');
  t.equal(await text('#k-rate'), '1', 'claim rate counts the claim');

  const dir = path.join(repoRoot, 'test-results');
  mkdirSync(dir, { recursive: true });
  const shot = path.join(dir, 'dashboard.png');
  await page.screenshot({ path: shot, fullPage: true });
  t.ok(statSync(shot).size > 10_000, `screenshot saved to ${shot}`);
});

// The dashboard's pool plot in headless Chromium during a burst: the plot's newest point
// (target, ready, booting, waiting) matches /v1/services while sessions wait and after they
// are served; uPlot is served by the router itself; a screenshot goes to the CI artifacts.
import t from 'tap';
import { mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';
import { Registry, parseServiceSpec } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { buildRouter } from '@warmpool/router';
import { startEtcd, infraSkip, eventually, repoRoot, chromiumMissing, chromiumPath } from '../src/index.js';

interface ServiceRow { name: string; target: number; waitingFleet: number; readyUnclaimed: number; instances: Record<string, number> }

t.test('dashboard plot follows a burst and agrees with /v1/services', { skip: infraSkip('etcd') || chromiumMissing() }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const store = new EtcdKvStore({ endpoints: etcd.endpoints });
  const reg = new Registry(store, { prefix: `/dash-pool-${randomBytes(3).toString('hex')}/` });
  t.teardown(async () => { await reg.close(); await store.close(); });
  const spec = parseServiceSpec({ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: { min: 1, max: 8, target: 0.99 } });
  if (!spec.ok) throw new Error('spec');
  await reg.putService(spec.spec);
  // A host record and instances written as an agent would (no containers: the page is under test).
  const host = await reg.openHost({ id: 'host-a', address: '127.0.0.1', capacity: { instances: 16, memoryMb: 0 }, labels: {}, draining: false, startedAt: Date.now(), agentVersion: 't' });
  t.teardown(() => host.close({ revoke: true }));
  const put = (i: number, state: 'booting' | 'ready') => host.putInstance({
    id: `inst-${i}`, service: 'chatbot', host: 'host-a', state, address: `127.0.0.1:${46000 + i}`, containerId: '', slot: null,
    createdAt: Date.now() - 1_000, readyAt: state === 'ready' ? Date.now() : null, bootMs: state === 'ready' ? 4_000 : null,
  });

  const router = buildRouter({ registry: reg });
  t.teardown(() => router.close());
  await router.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(router.server.address() as { port: number }).port}`;
  const services = async (): Promise<ServiceRow> => ((await (await fetch(`${url}/v1/services`)).json()) as { services: ServiceRow[] }).services[0]!;

  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const requests: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(`${url}/dashboard`);
  t.ok(await page.evaluate(() => typeof (globalThis as unknown as { uPlot?: unknown }).uPlot === 'function'), 'uPlot loaded');
  t.ok(requests.every((u) => u.startsWith(url)), 'every request went to the router itself (no CDN)');

  type Point = { target: number; ready: number; booting: number; waiting: number };
  const lastPoint = async (): Promise<Point | undefined> => page.evaluate(() => {
    const d = (globalThis as unknown as { __warmpoolPlots: Record<string, (number | null)[][]> }).__warmpoolPlots.chatbot;
    if (!d || !d[0]!.length) return undefined;
    const at = (c: number) => d[c]![d[c]!.length - 1] as number;
    return { target: at(1), ready: at(2), booting: at(3), waiting: at(5) };
  });
  const agrees = async (what: string, want: (s: ServiceRow, p: Point) => boolean) => eventually(async () => {
    const p = await lastPoint();
    const s = await services();
    if (!p || p.target !== s.target || p.ready !== s.readyUnclaimed || p.booting !== (s.instances.booting ?? 0) || p.waiting !== s.waitingFleet || !want(s, p)) {
      throw new Error(`plot ${JSON.stringify(p)} vs /v1/services ${JSON.stringify(s)}`);
    }
    return p;
  }, { timeoutMs: 20_000, intervalMs: 250, what });

  // The burst: 6 sessions ask at once, nothing is ready; two boots are under way.
  await put(0, 'booting');
  await put(1, 'booting');
  const pending = Array.from({ length: 6 }, () => fetch(`${url}/v1/sessions?wait=60`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service: 'chatbot' }),
  }));
  const during = await agrees('plot shows the waiters', (s) => s.waitingFleet === 6);
  t.match(during, { waiting: 6, booting: 2 }, 'six waiting, two booting, on the plot and in /v1/services');
  t.match(await page.locator('[data-pool="chatbot"]').textContent(), /waiting 6 · first waiter served (in ~|within )\d[\dhms.]*/, 'the ETA shows');

  const dir = process.env.CI_RESULTS_DIR ?? path.join(repoRoot, 'test-results');
  mkdirSync(dir, { recursive: true });
  const shot = path.join(dir, 'dashboard-pool-burst.png');
  await page.screenshot({ path: shot, fullPage: true });
  t.ok(statSync(shot).size > 10_000, `screenshot saved to ${shot}`);

  // Instances turn ready: every waiter is served, the plot follows.
  for (let i = 0; i < 8; i++) await put(i, 'ready');
  const statuses = (await Promise.all(pending)).map((r) => r.status);
  t.same(statuses, Array(6).fill(201), 'all six served');
  const after = await agrees('plot shows them served', (s) => s.waitingFleet === 0 && s.readyUnclaimed === 2);
  t.match(after, { waiting: 0, ready: 2 });
  t.ok((await page.evaluate(() => (globalThis as unknown as { __warmpoolPlots: Record<string, unknown[][]> }).__warmpoolPlots.chatbot![0]!.length)) >= 2, 'the plot holds a series, not a single point');
});

import { startMesh, eventually, type Mesh } from '../../src/index.js';

/** One agent, one router, warm 1: the smallest mesh that shows each bug. */
export async function tinyMesh(leaseTtlSec: number): Promise<Mesh> {
  return startMesh({
    agents: 1, routers: 1, leaseTtlSec,
    services: { services: [{ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 1, maxPerHost: 4, bootTimeoutSec: 30, readiness: { intervalMs: 200 }, env: { BOOT_SECONDS: '1' } }] },
  });
}

export interface Pool { ready: number; booting: number; claimed: number; target: number }

export async function pool(mesh: Mesh): Promise<Pool> {
  const s = JSON.parse((await mesh.cli('status', '--json')).stdout) as { services: Pool[] };
  return s.services[0]!;
}

export async function untilReady(mesh: Mesh): Promise<void> {
  await eventually(async () => (await pool(mesh)).ready === 1, { timeoutMs: 60_000, intervalMs: 300, what: 'one ready instance' });
}

export async function createSession(router: string, waitSec = 5): Promise<{ status: number; sessionId?: string; instanceId?: string }> {
  const res = await fetch(`${router}/v1/sessions?wait=${waitSec}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"service":"chatbot"}' });
  const body = (await res.json()) as { sessionId?: string; instanceId?: string };
  return { status: res.status, ...body };
}

export async function chat(router: string, sessionId: string): Promise<{ status: number; instance: string | null; code?: string }> {
  const res = await fetch(`${router}/v1/sessions/${sessionId}/proxy/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"demo","messages":[{"role":"user","content":"hi"}]}',
  });
  const body = (await res.json().catch(() => ({}))) as { error?: { code?: string } };
  return { status: res.status, instance: res.headers.get('x-instance-id'), ...(body.error?.code ? { code: body.error.code } : {}) };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

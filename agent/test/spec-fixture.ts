import type { ServiceSpec } from '@warmpool/registry';

/** A minimal valid spec for the host-policy tests (no container options). */
export const baseSpec = {
  name: 'vllm', image: 'vllm/vllm-openai', containerPort: 8000, warm: 1, maxPerHost: 1, bootTimeoutSec: 600,
  readiness: { path: '/health', expectStatus: 200, intervalMs: 1000, failureThreshold: 3 },
  session: { idleTimeoutSec: 60, maxLifetimeSec: 600 }, env: {}, resources: { memoryMb: 0, cpus: 0, gpus: 0 },
} satisfies ServiceSpec;

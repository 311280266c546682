import { emit, round } from './stats.js';
import { startServer, wrk, type Child, type WrkResult } from './router-servers.js';

/**
 * proxy-compare: the decision benchmark of docs/decisions/proxy.md. The same fastify route
 * proxying to the same upstream with http-proxy-3 (hijacked reply, keep-alive agent) and
 * with @fastify/reply-from (undici pool), http-proxy-3 on a plain Node server (how the
 * router's hot path runs it), next to the upstream directly and a bare Node
 * proxy, for a small JSON response and a 256 KiB body. Each server is its own process.
 * Args: [seconds per run (default 5)] [connections (default 32)].
 */
export async function run(args: string[]): Promise<void> {
  const seconds = Number(args[0] ?? 5);
  const connections = Number(args[1] ?? 32);
  const started: Child[] = [];
  try {
    const upstream = await startServer('upstream');
    started.push(upstream);
    const target = `127.0.0.1:${upstream.port}`;
    const variants: Record<string, number> = { direct: upstream.port };
    for (const kind of ['bare-proxy', 'node-http-proxy-3', 'fastify-http-proxy-3', 'fastify-reply-from'] as const) {
      const c = await startServer(kind, target);
      started.push(c);
      variants[kind] = c.port;
    }
    const results: Record<string, Record<string, WrkResult>> = {};
    for (const [payload, query] of [['small', '/v1/chat/completions'], ['256KiB', '/blob?bytes=262144']] as const) {
      results[payload] = {};
      // Two rounds, alternating order, best of two: less sensitive to a noisy neighbour.
      for (let round2 = 0; round2 < 2; round2++) {
        const order = Object.keys(variants);
        if (round2 === 1) order.reverse();
        for (const name of order) {
          const url = `http://127.0.0.1:${variants[name]}${query}`;
          await wrk(url, { connections, seconds: 1 }); // warm-up
          const r = await wrk(url, { connections, seconds });
          const prev = results[payload][name];
          if (!prev || r.rps > prev.rps) results[payload][name] = r;
          emit({ bench: 'proxy-compare', payload, variant: name, round: round2, rps: r.rps, p50Ms: r.p50Ms, p99Ms: r.p99Ms, errors: r.errors });
        }
      }
    }
    const s = results.small!;
    const b = results['256KiB']!;
    emit({
      bench: 'proxy-compare',
      summary: true,
      connections,
      seconds,
      httpProxy3Rps: s['fastify-http-proxy-3']!.rps,
      replyFromRps: s['fastify-reply-from']!.rps,
      bareProxyRps: s['bare-proxy']!.rps,
      directRps: s.direct!.rps,
      nodeHttpProxy3Rps: s['node-http-proxy-3']!.rps,
      nodeHttpProxy3VsReplyFrom: round(s['node-http-proxy-3']!.rps / s['fastify-reply-from']!.rps),
      httpProxy3P99Ms: s['fastify-http-proxy-3']!.p99Ms,
      replyFromP99Ms: s['fastify-reply-from']!.p99Ms,
      httpProxy3VsReplyFrom: round(s['fastify-http-proxy-3']!.rps / s['fastify-reply-from']!.rps),
      httpProxy3VsBareProxy: round(s['fastify-http-proxy-3']!.rps / s['bare-proxy']!.rps),
      replyFromVsBareProxy: round(s['fastify-reply-from']!.rps / s['bare-proxy']!.rps),
      large: {
        httpProxy3Rps: b['fastify-http-proxy-3']!.rps,
        replyFromRps: b['fastify-reply-from']!.rps,
        bareProxyRps: b['bare-proxy']!.rps,
        directRps: b.direct!.rps,
        httpProxy3VsReplyFrom: round(b['fastify-http-proxy-3']!.rps / b['fastify-reply-from']!.rps),
        nodeHttpProxy3Rps: b['node-http-proxy-3']!.rps,
        nodeHttpProxy3VsReplyFrom: round(b['node-http-proxy-3']!.rps / b['fastify-reply-from']!.rps),
      },
      errors: Object.values(results).flatMap((r) => Object.values(r)).reduce((a, r) => a + r.errors, 0),
    });
  } finally {
    await Promise.all(started.map((c) => c.stop()));
  }
}

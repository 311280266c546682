// Entry point of the demo AI container `warmpool/chatbot-demo`: an OpenAI-compatible
// chatbot that boots slowly, like a model server loading weights. Wiring only; the
// behaviour lives in handler.ts and chat.ts.
//
// Environment (all optional):
//   PORT (8000), HOST (0.0.0.0), INSTANCE_ID (the hostname), MODEL (warmpool-demo),
//   BOOT_SECONDS (20, fractional allowed), TOKEN_DELAY_MS (15),
//   NEVER_READY=1, CRASH_AFTER_SECONDS=N, UNHEALTHY_AFTER_SECONDS=N (test knobs).
//   LOAD_BEHAVIOUR: how it behaves while the model loads (BOOT_SECONDS), like real servers:
//     503 (default: /health 503, like llama.cpp, SGLang, NIM), refuse (listens only once
//     loaded: connections refused, like vLLM, TGI, Triton), lazy (200 at once, the model loads
//     on the first completion, like Ollama: needs a warm-up request).
//   HEALTH_STALL_WHILE_STREAMING=1: /health answers only once no stream is in flight.
//   DEBUG_CONTROLS=1: POST /debug/hang (nothing is answered afterwards), POST /debug/oom.
import http from 'node:http';
import os from 'node:os';
import { createChatbotHandler } from './handler.js';

function numberEnv(name: string, fallback: number | undefined): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`chatbot: ${name} must be a non-negative number, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return n;
}

const startedAt = Date.now();
const port = numberEnv('PORT', 8000) ?? 8000;
const host = process.env.HOST || '0.0.0.0';
const instanceId = process.env.INSTANCE_ID || os.hostname();
const model = process.env.MODEL || 'warmpool-demo';
const bootSeconds = numberEnv('BOOT_SECONDS', 20) ?? 20;
const tokenDelayMs = numberEnv('TOKEN_DELAY_MS', 15) ?? 15;
const crashAfter = numberEnv('CRASH_AFTER_SECONDS', undefined);
const unhealthyAfter = numberEnv('UNHEALTHY_AFTER_SECONDS', undefined);
const flag = (name: string): boolean => ['1', 'true', 'yes'].includes((process.env[name] ?? '').toLowerCase());
const neverReady = flag('NEVER_READY');
const loadBehaviour = process.env.LOAD_BEHAVIOUR || '503';
if (!['503', 'refuse', 'lazy'].includes(loadBehaviour)) {
  console.error(`chatbot: LOAD_BEHAVIOUR must be 503, refuse or lazy, got ${JSON.stringify(loadBehaviour)}`);
  process.exit(2);
}
// refuse: the socket opens only once loaded, and then the model serves at once.
const listenDelayMs = loadBehaviour === 'refuse' ? bootSeconds * 1000 : 0;

const handler = createChatbotHandler({
  instanceId,
  model,
  plan: {
    bootMs: loadBehaviour === 'refuse' ? 0 : bootSeconds * 1000,
    neverReady,
    ...(unhealthyAfter === undefined ? {} : { unhealthyAfterMs: unhealthyAfter * 1000 }),
  },
  tokenDelayMs,
  now: Date.now,
  startedAt,
  load: loadBehaviour === 'lazy' ? 'lazy' : 'eager',
  stallHealthWhileStreaming: flag('HEALTH_STALL_WHILE_STREAMING'),
  debugControls: flag('DEBUG_CONTROLS'),
});

const server = http.createServer(handler);
server.keepAliveTimeout = 65_000; // outlive typical proxy idle timeouts
server.on('clientError', (_err, socket) => {
  if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  else socket.destroy();
});

setTimeout(() => server.listen(port, host, () => {
  const addr = server.address();
  const where = addr && typeof addr === 'object' ? `${addr.address}:${addr.port}` : String(addr);
  console.log(`chatbot ${instanceId}: listening on ${where}, loading model ${model} (${neverReady ? 'never' : `${bootSeconds}s`}, ${loadBehaviour})`);
}), listenDelayMs);

if (!neverReady) {
  setTimeout(() => console.log(`chatbot ${instanceId}: model loaded, ready`), bootSeconds * 1000).unref();
}
if (unhealthyAfter !== undefined) {
  setTimeout(() => console.log(`chatbot ${instanceId}: model engine now unhealthy`), unhealthyAfter * 1000).unref();
}
if (crashAfter !== undefined) {
  setTimeout(() => {
    console.error(`chatbot ${instanceId}: simulated crash after ${crashAfter}s`);
    process.exit(1);
  }, crashAfter * 1000);
}

// As PID 1 in a container node has no default signal handlers: stop promptly ourselves.
function shutdown(signal: string): void {
  console.log(`chatbot ${instanceId}: ${signal}, shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

// HTTP request handler of the demo chatbot (OpenAI-compatible). Never listens itself:
// server.ts wires it to a socket, tests can call it with any http.Server.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleepMs } from 'node:timers/promises';
import {
  ApiError,
  Memory,
  completionChunks,
  completionObject,
  composeReply,
  healthAt,
  lastUserMessage,
  modelObject,
  parseChatRequest,
  type CompletionMeta,
  type HealthPlan,
} from './chat.js';

export interface ChatbotOptions {
  instanceId: string;
  model: string;
  plan: HealthPlan;
  /** Pause between streamed chunks, like a model emitting tokens. */
  tokenDelayMs: number;
  /** Clock in ms; the process start is `startedAt` on this clock. */
  now: () => number;
  startedAt: number;
  maxBodyBytes?: number;
  sleep?: (ms: number) => Promise<void>;
  newId?: () => string;
  /**
   * 'lazy' (like Ollama): /health answers 200 at once; the model loads (plan.bootMs) on the
   * first chat completion, so only a warm-up request makes the first real answer fast.
   */
  load?: 'eager' | 'lazy';
  /** /health gives no answer while a stream is in flight (a busy model server), only after. */
  stallHealthWhileStreaming?: boolean;
  /** POST /debug/hang: from then on nothing is answered; POST /debug/oom: allocate memory until killed. */
  debugControls?: boolean;
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** Header naming the conversation; falls back to the body's `user`, then to the instance. */
export const CONVERSATION_HEADER = 'x-conversation-id';

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

function sendError(res: ServerResponse, err: ApiError, headers: Record<string, string> = {}): void {
  sendJson(res, err.status, err.body(), headers);
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new ApiError(413, 'invalid_request_error', 'body_too_large', `request body exceeds ${limit} bytes`));
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export function createChatbotHandler(opts: ChatbotOptions): Handler {
  const memory = new Memory();
  const sleep = opts.sleep ?? ((ms: number) => sleepMs(ms).then(() => undefined));
  const newId = opts.newId ?? (() => `chatcmpl-${randomBytes(12).toString('hex')}`);
  const maxBodyBytes = opts.maxBodyBytes ?? 1024 * 1024;
  const lazy = opts.load === 'lazy';
  const health = () => healthAt(lazy ? { ...opts.plan, bootMs: 0 } : opts.plan, opts.now() - opts.startedAt);
  let loading: Promise<void> | undefined;
  let streams = 0;
  let streamsDone: (() => void)[] = [];
  let hung = false;
  const hog: Buffer[] = [];
  const nowSeconds = () => Math.floor(opts.now() / 1000);

  /** 503 while loading, 500 once unhealthy; undefined when the model can serve. */
  function notServing(res: ServerResponse): boolean {
    const h = health();
    if (h === 'loading') {
      const left = Math.max(1, Math.ceil((opts.startedAt + opts.plan.bootMs - opts.now()) / 1000));
      sendError(res, new ApiError(503, 'server_error', 'model_loading', 'the model is still loading'), {
        'Retry-After': String(left),
      });
      return true;
    }
    if (h === 'unhealthy') {
      sendError(res, new ApiError(500, 'server_error', 'model_unhealthy', 'the model engine is unhealthy'));
      return true;
    }
    return false;
  }

  async function chatCompletions(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req, maxBodyBytes);
    if (notServing(res)) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      throw new ApiError(400, 'invalid_request_error', 'invalid_json', 'the request body is not valid JSON');
    }
    const chat = parseChatRequest(parsed);
    // Lazy: the first request pays the model's load; later ones wait for the same load.
    if (lazy) await (loading ??= sleep(opts.plan.bootMs));
    const header = req.headers[CONVERSATION_HEADER];
    const key = (typeof header === 'string' && header) || chat.user || 'default';
    const said = lastUserMessage(chat);
    const { turn, previous } = memory.recordTurn(key, said);
    const content = composeReply(opts.instanceId, turn, said, previous);
    const meta: CompletionMeta = { id: newId(), created: nowSeconds(), model: chat.model ?? opts.model };
    if (!chat.stream) {
      sendJson(res, 200, completionObject(meta, chat, content));
      return;
    }
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
    });
    res.flushHeaders();
    streams++;
    try {
      const chunks = completionChunks(meta, content);
      for (const [i, chunk] of chunks.entries()) {
        if (res.destroyed) return; // the client went away mid-stream
        if (i > 0 && opts.tokenDelayMs > 0) await sleep(opts.tokenDelayMs);
        res.write(`data: ${JSON.stringify(chunk)}\n\n`);
      }
      if (!res.destroyed) res.end('data: [DONE]\n\n');
    } finally {
      if (--streams === 0) { const done = streamsDone; streamsDone = []; for (const f of done) f(); }
    }
  }

  /** The debug controls (only with debugControls): a wedged server, or one that runs out of memory. */
  function debug(path: string, res: ServerResponse): boolean {
    if (!opts.debugControls) return false;
    if (path === '/debug/hang') { sendJson(res, 202, { hanging: true }); hung = true; return true; }
    if (path === '/debug/oom') {
      sendJson(res, 202, { allocating: true });
      // 16 MiB filled buffers every 10 ms until the container's memory limit kills the process.
      setInterval(() => hog.push(Buffer.alloc(16 * 1024 * 1024, 1)), 10);
      return true;
    }
    return false;
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const method = req.method ?? 'GET';
    const isGet = method === 'GET' || method === 'HEAD';
    if (hung) return; // wedged: the request stays open, unanswered
    if (method === 'POST' && debug(path, res)) return;
    if (path === '/health') {
      if (!isGet) throw methodNotAllowed(method, path);
      if (opts.stallHealthWhileStreaming && streams > 0) await new Promise<void>((r) => streamsDone.push(r));
      const h = health();
      sendJson(res, h === 'ok' ? 200 : h === 'loading' ? 503 : 500, { status: h });
      return;
    }
    if (path === '/v1/chat/completions') {
      if (method !== 'POST') throw methodNotAllowed(method, path);
      await chatCompletions(req, res);
      return;
    }
    if (path === '/v1/models' || path.startsWith('/v1/models/')) {
      if (!isGet) throw methodNotAllowed(method, path);
      const model = modelObject(opts.model, Math.floor(opts.startedAt / 1000));
      if (path === '/v1/models') return sendJson(res, 200, { object: 'list', data: [model] });
      if (decodeURIComponent(path.slice('/v1/models/'.length)) === opts.model) return sendJson(res, 200, model);
      throw new ApiError(404, 'invalid_request_error', 'model_not_found', `the model does not exist`, 'model');
    }
    if (path === '/') {
      if (!isGet) throw methodNotAllowed(method, path);
      sendJson(res, 200, {
        service: 'chatbot-demo', instanceId: opts.instanceId, model: opts.model, status: health(), conversations: memory.size,
        // Tests check these before relying on them (the image may be older than the test).
        behaviours: { load: opts.load ?? 'eager', stallHealthWhileStreaming: opts.stallHealthWhileStreaming === true, debugControls: opts.debugControls === true },
      });
      return;
    }
    throw new ApiError(404, 'invalid_request_error', 'not_found', `no route for ${method} ${path}`);
  }

  return (req, res) => {
    res.setHeader('X-Instance-Id', opts.instanceId);
    res.on('error', () => undefined); // a vanished client must not crash the process
    route(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const apiErr = err instanceof ApiError ? err : new ApiError(500, 'server_error', 'internal_error', 'internal error');
      if (!(err instanceof ApiError)) console.error('chatbot: unexpected error', err);
      sendError(res, apiErr);
    });
  };
}

function methodNotAllowed(method: string, path: string): ApiError {
  return new ApiError(405, 'invalid_request_error', 'method_not_allowed', `${method} is not allowed on ${path}`);
}

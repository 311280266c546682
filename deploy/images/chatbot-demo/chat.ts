// Pure parts of the demo chatbot: its health over time, its per-conversation memory,
// the deterministic reply, and the OpenAI wire objects. No sockets, no timers, no env.

export type Health = 'loading' | 'ok' | 'unhealthy';

export interface HealthPlan {
  /** Simulated model load time. */
  bootMs: number;
  /** Stay 'loading' forever (a boot that never finishes). */
  neverReady?: boolean;
  /** From this age on, report 'unhealthy' (a model server whose engine died). */
  unhealthyAfterMs?: number;
}

/** Health of a process that started `ageMs` ago. */
export function healthAt(plan: HealthPlan, ageMs: number): Health {
  if (plan.unhealthyAfterMs !== undefined && ageMs >= plan.unhealthyAfterMs) return 'unhealthy';
  if (plan.neverReady || ageMs < plan.bootMs) return 'loading';
  return 'ok';
}

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatRequest {
  model?: string;
  messages: ChatMessage[];
  stream: boolean;
  /** OpenAI's end-user id; we use it as the conversation key when present. */
  user?: string;
}

/** An OpenAI-style error: the HTTP status plus the `{"error": {...}}` body. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  body(): { error: { message: string; type: string; param: string | null; code: string } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

function invalid(message: string, param: string | null = null): ApiError {
  return new ApiError(400, 'invalid_request_error', 'invalid_request', message, param);
}

/** Text of a message's content: a string, or the text parts of a content-part array. */
function contentText(content: unknown): string | undefined {
  if (typeof content === 'string') return content;
  if (content === null) return '';
  if (!Array.isArray(content)) return undefined;
  const parts: string[] = [];
  for (const p of content as unknown[]) {
    if (p && typeof p === 'object' && (p as { type?: unknown }).type === 'text') {
      const text = (p as { text?: unknown }).text;
      if (typeof text === 'string') parts.push(text);
    }
  }
  return parts.join('');
}

/** Validates a parsed JSON body as a chat completion request; throws ApiError (400). */
export function parseChatRequest(body: unknown): ChatRequest {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw invalid('the request body must be a JSON object');
  const b = body as Record<string, unknown>;
  if (!Array.isArray(b.messages) || b.messages.length === 0) {
    throw invalid("'messages' must be a non-empty array", 'messages');
  }
  const messages: ChatMessage[] = [];
  for (const [i, m] of (b.messages as unknown[]).entries()) {
    const role = m && typeof m === 'object' ? (m as { role?: unknown }).role : undefined;
    const content = m && typeof m === 'object' ? contentText((m as { content?: unknown }).content) : undefined;
    if (typeof role !== 'string' || content === undefined) {
      throw invalid(`messages[${i}] needs a string 'role' and a string or text-part 'content'`, `messages[${i}]`);
    }
    messages.push({ role, content });
  }
  if (b.model !== undefined && typeof b.model !== 'string') throw invalid("'model' must be a string", 'model');
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== 'boolean') {
    throw invalid("'stream' must be a boolean", 'stream');
  }
  if (b.user !== undefined && typeof b.user !== 'string') throw invalid("'user' must be a string", 'user');
  const req: ChatRequest = { messages, stream: b.stream === true };
  if (typeof b.model === 'string') req.model = b.model;
  if (typeof b.user === 'string') req.user = b.user;
  return req;
}

interface Conversation {
  turns: number;
  lastUserMessage: string | undefined;
}

/**
 * What this instance remembers of each conversation. This in-process state is why one
 * instance serves exactly one session: another instance would not know the history.
 * Bounded, oldest conversation forgotten first.
 */
export class Memory {
  private readonly conversations = new Map<string, Conversation>();

  constructor(private readonly maxConversations = 1000) {}

  /** Records one user turn and returns the turn number and the previous user message. */
  recordTurn(key: string, userMessage: string): { turn: number; previous: string | undefined } {
    const conv = this.conversations.get(key) ?? { turns: 0, lastUserMessage: undefined };
    this.conversations.delete(key); // re-insert: Map order doubles as recency order
    const previous = conv.lastUserMessage;
    conv.turns += 1;
    conv.lastUserMessage = userMessage;
    this.conversations.set(key, conv);
    while (this.conversations.size > this.maxConversations) {
      const oldest = this.conversations.keys().next().value;
      if (oldest === undefined) break;
      this.conversations.delete(oldest);
    }
    return { turn: conv.turns, previous };
  }

  get size(): number {
    return this.conversations.size;
  }
}

/** The deterministic reply: instance, turn number, an echo, and what it remembers. */
export function composeReply(instanceId: string, turn: number, said: string, previous: string | undefined): string {
  const recall =
    previous === undefined ? 'This is our first exchange.' : `Before that you said "${previous}".`;
  return `[${instanceId}] Turn ${turn}: you said "${said}". ${recall}`;
}

/** Last user message of a request (what the reply echoes). */
export function lastUserMessage(req: ChatRequest): string {
  for (let i = req.messages.length - 1; i >= 0; i--) {
    const m = req.messages[i];
    if (m && m.role === 'user') return m.content;
  }
  return '';
}

/** Splits a reply into stream deltas: one per word, the space kept with the word before it. */
export function splitIntoDeltas(text: string): string[] {
  return text.match(/\S+\s*|\s+/g) ?? [];
}

/** A rough token count (words), only for the `usage` block. */
export function countTokens(text: string): number {
  return text.split(/\s+/).filter(Boolean).length;
}

export interface CompletionMeta {
  id: string;
  created: number;
  model: string;
}

export function completionObject(meta: CompletionMeta, req: ChatRequest, content: string): object {
  const promptTokens = req.messages.reduce((n, m) => n + countTokens(m.content), 0);
  const completionTokens = countTokens(content);
  return {
    id: meta.id,
    object: 'chat.completion',
    created: meta.created,
    model: meta.model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content, refusal: null },
        logprobs: null,
        finish_reason: 'stop',
      },
    ],
    usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
  };
}

/**
 * The `chat.completion.chunk` objects of a streamed reply: a role chunk, one chunk per
 * delta, and a final chunk carrying `finish_reason`.
 */
export function completionChunks(meta: CompletionMeta, content: string): object[] {
  const chunk = (delta: object, finish: string | null): object => ({
    id: meta.id,
    object: 'chat.completion.chunk',
    created: meta.created,
    model: meta.model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  });
  return [
    chunk({ role: 'assistant', content: '' }, null),
    ...splitIntoDeltas(content).map((d) => chunk({ content: d }, null)),
    chunk({}, 'stop'),
  ];
}

export function modelObject(model: string, created: number): object {
  return { id: model, object: 'model', created, owned_by: 'warmpool' };
}

// A stand-in for an AI instance, for the router's end-to-end tests and benchmarks: an
// OpenAI-compatible chat endpoint (streaming and not), a slow SSE stream, a WebSocket echo,
// `X-Instance-Id` on every answer. With `instanceKey` it checks the sidecar credential
// itself (as the sidecar would), so a request that reaches it without the right one fails.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { CREDENTIAL_HEADER, verifyCredential } from '@warmpool/registry';

export interface Upstream {
  id: string;
  address: string;
  port: number;
  /** Requests received (after the credential check), by path. */
  hits: string[];
  close(): Promise<void>;
}

function words(text: string): string[] {
  return text.split(/(?<= )/);
}

export async function startUpstream(opts: { id: string; instanceKey?: string; tokenDelayMs?: number }): Promise<Upstream> {
  const hits: string[] = [];
  const delay = opts.tokenDelayMs ?? 5;
  const allowed = (req: http.IncomingMessage): boolean =>
    !opts.instanceKey || verifyCredential(opts.instanceKey, req.headers[CREDENTIAL_HEADER] as string | undefined) !== undefined;
  const server = http.createServer((req, res) => {
    res.setHeader('x-instance-id', opts.id);
    if (req.url === '/health') { res.end('ok'); return; }
    if (!allowed(req)) { res.writeHead(403).end('{"error":"credential"}'); req.resume(); return; }
    hits.push((req.url ?? '').split('?')[0]!);
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/slow-sse') {
      const n = Number(url.searchParams.get('n') ?? 50);
      const gap = Number(url.searchParams.get('gapMs') ?? 50);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let i = 0;
      const timer = setInterval(() => {
        if (i >= n) { clearInterval(timer); res.end('data: [DONE]\n\n'); return; }
        res.write(`data: {"i":${i++}}\n\n`);
      }, gap);
      res.on('close', () => clearInterval(timer));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (url.pathname === '/v1/chat/completions' && req.method === 'POST') {
        let body: { messages?: { role: string; content: string }[]; stream?: boolean; model?: string };
        try { body = JSON.parse(Buffer.concat(chunks).toString()) as typeof body; } catch { res.writeHead(400).end('{"error":"json"}'); return; }
        const last = [...(body.messages ?? [])].reverse().find((m) => m.role === 'user')?.content ?? '';
        const reply = `instance ${opts.id} heard: ${last}`;
        const base = { id: `chatcmpl-${opts.id}`, created: Math.floor(Date.now() / 1000), model: body.model ?? 'warmpool-test' };
        if (!body.stream) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ ...base, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: reply }, finish_reason: 'stop' }] }));
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        const parts = words(reply);
        let i = 0;
        const send = (): void => {
          if (res.destroyed) return;
          if (i < parts.length) {
            res.write(`data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta: i === 0 ? { role: 'assistant', content: parts[i] } : { content: parts[i] }, finish_reason: null }] })}\n\n`);
            i++;
            setTimeout(send, delay);
          } else {
            res.write(`data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
            res.end('data: [DONE]\n\n');
          }
        };
        send();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ instanceId: opts.id, method: req.method, url: req.url }));
    });
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    if (!allowed(req)) { socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n'); return; }
    hits.push(`ws:${req.url ?? ''}`);
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.send(`hello from ${opts.id}`);
      ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `${opts.id}: ${data.toString()}`, { binary: isBinary }));
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    id: opts.id, port, address: `127.0.0.1:${port}`, hits,
    close: () => new Promise<void>((resolve) => {
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

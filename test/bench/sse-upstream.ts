/**
 * A streaming stand-in for a chatbot instance, for the router-streams benchmark: every
 * GET answers an SSE stream with one small event every `gapMs` (default 200) for `ms`
 * milliseconds, each carrying its send time (ms since epoch). Prints "listening PORT".
 * Args: PORT
 */
import http from 'node:http';

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  const ms = Number(url.searchParams.get('ms') ?? 10_000);
  const gap = Number(url.searchParams.get('gapMs') ?? 200);
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
  const end = Date.now() + ms;
  const timer = setInterval(() => {
    if (Date.now() >= end) { clearInterval(timer); res.end('data: [DONE]\n\n'); return; }
    res.write(`data: ${Date.now()}\n\n`);
  }, gap);
  res.on('close', () => clearInterval(timer));
});
server.maxConnections = 100_000;
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`listening ${(server.address() as { port: number }).port}\n`);
});

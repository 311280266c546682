/**
 * A streaming stand-in for a chatbot instance, for the router-streams benchmark: every
 * GET answers an SSE stream (HTTP/1.1, chunked) with one small event every `gapMs`
 * (default 200) for `ms` milliseconds, each carrying its send time (ms since epoch).
 * Prints "listening PORT". Args: PORT
 *
 * It is a load generator, so it spends as little CPU as it can, leaving the machine to the
 * router under test: raw sockets (one write per event, no http.ServerResponse), and one
 * timer for all streams. The streams are spread evenly over the gap (a timer wheel of
 * TICK_MS slots, streams assigned round-robin), as token streams of many sessions are, so
 * the router never gets every stream's event in one burst.
 */
import net from 'node:net';

const TICK_MS = 5;

interface Stream { socket: net.Socket; end: number }

/** Streams by gap: one wheel of `slots.length` slots per distinct gap. */
const wheels = new Map<number, { slots: Set<Stream>[]; next: number }>();
let tick = 0;

function join(s: Stream, gap: number): Set<Stream> {
  let w = wheels.get(gap);
  if (w === undefined) {
    w = { slots: Array.from({ length: Math.max(1, Math.round(gap / TICK_MS)) }, () => new Set<Stream>()), next: 0 };
    wheels.set(gap, w);
  }
  const slot = w.slots[w.next++ % w.slots.length]!;
  slot.add(s);
  return slot;
}

setInterval(() => {
  tick++;
  const now = Date.now();
  const body = `data: ${now}\n\n`;
  const event = `${body.length.toString(16)}\r\n${body}\r\n`;
  for (const w of wheels.values()) {
    const slot = w.slots[tick % w.slots.length]!;
    for (const s of slot) {
      if (now >= s.end) {
        slot.delete(s);
        s.socket.end('e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n');
        continue;
      }
      s.socket.write(event);
    }
  }
}, TICK_MS);

const HEAD = 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n';

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  let buf = '';
  let slot: Set<Stream> | undefined;
  let stream: Stream | undefined;
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => {
    // One request per connection is all the benchmark sends; while a stream runs, whatever
    // else arrives is ignored.
    if (stream !== undefined) return;
    buf += d;
    const headEnd = buf.indexOf('\r\n\r\n');
    if (headEnd < 0) {
      if (buf.length > 64 * 1024) socket.destroy();
      return;
    }
    const target = buf.slice(0, buf.indexOf('\r\n')).split(' ')[1] ?? '/';
    const url = new URL(target, 'http://x');
    const ms = Number(url.searchParams.get('ms') ?? 10_000);
    const gap = Number(url.searchParams.get('gapMs') ?? 200);
    socket.write(HEAD);
    stream = { socket, end: Date.now() + ms };
    slot = join(stream, gap);
  });
  socket.on('close', () => { if (stream !== undefined) slot?.delete(stream); });
  socket.on('error', () => undefined);
});
server.maxConnections = 100_000;
// The backlog the router uses too (listen.backlog): thousands of streams open at once.
server.listen({ port: Number(process.argv[2] ?? 0), host: '127.0.0.1', backlog: 4096 }, () => {
  process.stdout.write(`listening ${(server.address() as { port: number }).port}\n`);
});

// What makes an instance busy for the liveness rule: an HTTP exchange under way, or a tunnel
// (WebSocket) that carried bytes recently; an idle open tunnel is no work.
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { Forwarder } from '../src/forward.js';

t.test('busy: HTTP in flight, tunnels only while they carry bytes', async (t) => {
  let finish: () => void = () => {};
  const upgraded = new Set<Duplex>();
  const app = http.createServer((_req, res) => { res.writeHead(200); res.write('a'); finish = () => res.end('b'); });
  app.on('upgrade', (_req, socket: Duplex) => {
    upgraded.add(socket);
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
    socket.on('data', (d: Buffer) => socket.write(d));
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  let now = 1_000_000;
  const fwd = new Forwarder({ host: '127.0.0.1', port: (app.address() as AddressInfo).port, tunnelBusyMs: 1000, now: () => now });
  const front = http.createServer((req, res) => fwd.http(req, res, () => res.destroy()));
  front.on('upgrade', (req, socket: Duplex, head: Buffer) => fwd.upgrade(req, socket, head));
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  const port = (front.address() as AddressInfo).port;
  t.teardown(() => new Promise<void>((r) => {
    fwd.close();
    for (const s of upgraded) s.destroy();
    front.closeAllConnections(); app.closeAllConnections();
    front.close(() => app.close(() => r()));
  }));
  const until = async (fn: () => boolean): Promise<void> => {
    const end = Date.now() + 5000;
    while (!fn()) { if (Date.now() > end) throw new Error('timed out'); await new Promise((r) => setTimeout(r, 10)); }
  };

  t.equal(fwd.inFlight(), 0);
  const res = await fetch(`http://127.0.0.1:${port}/stream`);
  const reader = res.body!.getReader();
  await reader.read();
  t.equal(fwd.inFlight(), 1, 'a response under way');
  finish();
  while (!(await reader.read()).done) { /* drain */ }
  await until(() => fwd.inFlight() === 0);
  t.pass('done: idle again');

  const sock = net.connect(port, '127.0.0.1');
  let got = '';
  sock.on('data', (d: Buffer) => { got += d.toString(); });
  sock.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
  await until(() => got.includes('101'));
  t.equal(fwd.inFlight(), 1, 'a fresh tunnel');
  now += 5000;
  t.equal(fwd.inFlight(), 0, 'an open tunnel without traffic is idle');
  sock.write('ping');
  await until(() => got.includes('ping'));
  t.equal(fwd.inFlight(), 1, 'bytes through it: busy again');
  sock.destroy();
});

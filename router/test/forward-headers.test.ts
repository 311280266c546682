// The header rules of the hop to an instance and back, on plain objects (the proxy tests
// check the same rules end to end through a listening router).
import type { IncomingMessage } from 'node:http';
import t from 'tap';
import { clientResponseHeaders, upstreamHeaders } from '../src/forward-headers.js';

function request(headers: Record<string, string>, socket: Record<string, unknown> = { remoteAddress: '10.0.0.7', localPort: 8080 }): IncomingMessage {
  return { headers, socket } as unknown as IncomingMessage;
}

t.test('request: hop-by-hop, listed and forwarding headers from the client never reach the instance', async (t) => {
  const client = {
    host: 'router.example:8080', 'content-length': '5', 'content-type': 'application/json', authorization: 'Bearer app-token',
    connection: 'keep-alive, X-Drop-Me, content-length, host', 'x-drop-me': '1', 'keep-alive': 'timeout=1', te: 'trailers', trailer: 'x',
    'proxy-authorization': 'Basic abc', 'proxy-connection': 'keep-alive', upgrade: 'websocket',
    forwarded: 'for=6.6.6.6', 'x-forwarded-for': '6.6.6.6', 'x-forwarded-host': 'evil', 'x-forwarded-proto': 'https', 'x-forwarded-port': '1', 'x-real-ip': '6.6.6.6',
    'x-warmpool-credential': 'forged', 'x-warmpool-session': 'someone-else',
  };
  const before = { ...client };
  const h = upstreamHeaders(request(client), { credential: 'cred', sessionId: 'sess' });
  t.same(h, {
    host: 'router.example:8080', 'content-length': '5', 'content-type': 'application/json', authorization: 'Bearer app-token',
    'x-forwarded-for': '10.0.0.7', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'router.example:8080', 'x-forwarded-port': '8080',
    'x-warmpool-credential': 'cred', 'x-warmpool-session': 'sess',
  }, 'only end-to-end headers, Host and Content-Length kept even when listed in Connection, the router\'s own forwarding and credential');
  t.same(client, before, 'the client request\'s headers are left as they arrived');
});

t.test('request: chunked bodies stay chunked, WebSocket upgrades keep Upgrade, TLS says https', async (t) => {
  const chunked = upstreamHeaders(request({ host: 'a', 'transfer-encoding': 'gzip, chunked' }), { credential: 'c', sessionId: 's' });
  t.equal(chunked['transfer-encoding'], 'chunked', 'the router re-frames the body itself');
  const ws = upstreamHeaders(request({ host: 'a', connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'k' }), { credential: 'c', sessionId: 's', upgrade: true });
  t.equal(ws.connection, 'Upgrade');
  t.equal(ws.upgrade, 'websocket');
  t.equal(ws['sec-websocket-key'], 'k');
  const plain = upstreamHeaders(request({ host: 'a', connection: 'Upgrade', upgrade: 'websocket' }), { credential: 'c', sessionId: 's' });
  t.notOk(plain.upgrade, 'no upgrade forwarded on a plain request');
  t.notOk(plain.connection);
  const tls = upstreamHeaders(request({}, { remoteAddress: '::1', encrypted: true }), { credential: 'c', sessionId: 's' });
  t.equal(tls['x-forwarded-proto'], 'https');
  t.notOk(tls['x-forwarded-host'], 'no Host, no X-Forwarded-Host');
  t.notOk(tls['x-forwarded-port'], 'no local port, no X-Forwarded-Port');
});

t.test('response: the instance\'s hop-by-hop and Connection-listed headers are dropped, the rest relayed', async (t) => {
  const h: Record<string, string | string[]> = {
    'content-type': 'text/event-stream', 'x-instance-id': 'i1', 'set-cookie': ['a=1', 'b=2'],
    connection: 'keep-alive, X-Internal', 'keep-alive': 'timeout=5', 'x-internal': 'secret', 'transfer-encoding': 'chunked', trailer: 'x', upgrade: 'h2c',
  };
  const before = { ...h };
  t.same(clientResponseHeaders(h), { 'content-type': 'text/event-stream', 'x-instance-id': 'i1', 'set-cookie': ['a=1', 'b=2'] });
  t.same(h, before, 'the instance\'s headers object is left as it was');
  t.same(clientResponseHeaders({ connection: 'close', 'content-length': '2' }), { 'content-length': '2' });
});

import t from 'tap';
import { createRequire } from 'node:module';
import path from 'node:path';
import protobuf from 'protobufjs';
import type { IWatchResponse } from 'etcd3';
import { watchResponseBytes } from '../src/etcd-watch-size.js';

// etcd's own message definitions, as the etcd client ships them, encode the reference.
const require = createRequire(import.meta.url);
const protoDir = path.join(path.dirname(require.resolve('etcd3/package.json')), 'proto');
const root = protobuf.loadSync(path.join(protoDir, 'rpc.proto'));
const WatchResponse = root.lookupType('etcdserverpb.WatchResponse');
// How etcd3 decodes what it receives (connection-pool.js: keepCase, longs and enums as strings, defaults).
const decoded = (msg: object): IWatchResponse => WatchResponse.toObject(WatchResponse.decode(WatchResponse.encode(WatchResponse.fromObject(msg)).finish()), {
  longs: String, enums: String, defaults: true, oneofs: true,
}) as IWatchResponse;
const encodedLength = (msg: object): number => WatchResponse.encode(WatchResponse.fromObject(msg)).finish().length;

t.test('watchResponseBytes equals the protobuf encoding of what etcd sent', async (t) => {
  const header = { cluster_id: '14841639068965178418', member_id: '10276657743932975437', revision: '123456', raft_term: '7' };
  const kv = (key: string, value: string, rev: string) => ({
    key: Buffer.from(key), value: Buffer.from(value), create_revision: rev, mod_revision: rev, version: '1', lease: '7587888195385386515',
  });
  const cases: Record<string, object> = {
    'a progress notification': { header, watch_id: '0' },
    'created': { header, watch_id: '3', created: true },
    'canceled after compaction': { header, watch_id: '2', canceled: true, compact_revision: '99', cancel_reason: 'mvcc: required revision has been compacted' },
    'a claim: two puts and a delete': {
      header, watch_id: '1', events: [
        { kv: kv('/warmpool/claims/chatbot/sim-1-i3', JSON.stringify({ sessionId: 'x'.repeat(26), claimedAt: Date.now() }), '123456') },
        { kv: kv('/warmpool/sessions/abc', 'v'.repeat(300), '123456') },
        { type: 'Delete', kv: { key: Buffer.from('/warmpool/slots/chatbot/4'), mod_revision: '123456' } },
      ],
    },
    'a big value (2-byte lengths)': { header, watch_id: '1', events: [{ kv: kv('/k', 'x'.repeat(20_000), '5') }] },
  };
  t.equal(decoded(cases['a claim: two puts and a delete']!).events[2]?.type, 'Delete', 'the delete decodes as one');
  for (const [name, msg] of Object.entries(cases)) t.equal(watchResponseBytes(decoded(msg)), encodedLength(msg), name);
});

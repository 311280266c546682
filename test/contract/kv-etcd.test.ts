// The KvStore contract against a real, private etcd (one member).
import t from 'tap';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { infraSkip, startEtcd } from '@warmpool/test';
import { runKvConformance } from './kv-conformance.js';

t.test('EtcdKvStore conformance', { skip: infraSkip('etcd') }, async (t) => {
  const etcd = await startEtcd({ members: 1 });
  t.teardown(() => etcd.stop());
  await runKvConformance(t, 'etcd', async () => {
    // A tiny list page size makes every list() of the suite exercise pagination.
    const store = new EtcdKvStore({ endpoints: etcd.endpoints, listPageSize: 2 });
    return { store, cleanup: () => store.close() };
  });
});

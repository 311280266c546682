import t from 'tap';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { infraSkip, startEtcd } from '@warmpool/test';
import { runRegistryConformance } from './registry-conformance.js';

t.test('Registry on etcd', { skip: infraSkip('etcd') }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  await runRegistryConformance(t as never, async () => {
    const store = new EtcdKvStore({ endpoints: etcd.endpoints });
    return { store, cleanup: () => store.close() };
  }, { leaseTtlSec: 2 });
});

import t from 'tap';
import { ConsulKvStore } from '@warmpool/registry/consul-kv';
import { infraSkip, startConsul } from '@warmpool/test';
import { runRegistryConformance } from './registry-conformance.js';

t.test('Registry on Consul', { skip: infraSkip('consul') }, async (t) => {
  const consul = await startConsul();
  t.teardown(() => consul.stop());
  await runRegistryConformance(t as never, async () => {
    const store = new ConsulKvStore({ url: consul.url, watchWaitSec: 5 });
    return { store, cleanup: () => store.close() };
  }, { leaseTtlSec: 10 });
});

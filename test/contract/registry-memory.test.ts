import t from 'tap';
import { MemoryKvStore } from '@warmpool/registry';
import { runRegistryConformance } from './registry-conformance.js';

t.test('Registry on MemoryKvStore', async (t) => {
  // One store shared by every "process" of a case, as a real etcd would be.
  let store = new MemoryKvStore();
  let users = 0;
  await runRegistryConformance(t as never, async () => {
    if (users === 0) store = new MemoryKvStore();
    users++;
    const mine = store;
    return { store: mine, cleanup: async () => { if (--users === 0) await mine.close(); } };
  }, { leaseTtlSec: 2 });
});

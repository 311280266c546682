// The KvStore contract against the in-process MemoryKvStore.
import t from 'tap';
import { MemoryKvStore } from '@warmpool/registry/memory-kv';
import { runKvConformance } from './kv-conformance.js';

// Every "client" is the same store, as several etcd clients share one etcd. The suite's
// last test closes a client: here that closes the shared store, which is then unused.
const shared = new MemoryKvStore();
await runKvConformance(t, 'memory', async () => ({ store: shared, cleanup: () => shared.close() }));

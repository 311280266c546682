// The short fault suite, part 4 of 4: etcd down, a host cut off in its network namespace (see short-suite.ts).
import { shortFaultSuite } from './short-suite.js';

await shortFaultSuite(3);

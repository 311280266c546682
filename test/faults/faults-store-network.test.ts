// The short fault suite, second part: an app killed, etcd's leader killed, etcd down, a host
// cut off in its network namespace (see short-suite.ts).
import { shortFaultSuite } from './short-suite.js';

await shortFaultSuite(1);

// The short fault suite, part 3 of 4: an app killed, etcd's leader killed (see short-suite.ts).
import { shortFaultSuite } from './short-suite.js';

await shortFaultSuite(2);

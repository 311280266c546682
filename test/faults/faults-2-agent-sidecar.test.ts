// The short fault suite, part 2 of 4: an agent killed, a sidecar killed (see short-suite.ts).
import { shortFaultSuite } from './short-suite.js';

await shortFaultSuite(1);

// The short fault suite, part 1 of 4: a clean baseline, then a router killed (see short-suite.ts).
import { shortFaultSuite } from './short-suite.js';

await shortFaultSuite(0);

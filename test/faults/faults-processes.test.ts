// The short fault suite, first part: processes and containers killed (see short-suite.ts).
import { shortFaultSuite } from './short-suite.js';

await shortFaultSuite(0);

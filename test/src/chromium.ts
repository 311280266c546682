import { statSync } from 'node:fs';
import { inCI } from './infra.js';

/** Debian's headless Chromium (installed by deploy/testbed/setup.sh). */
export const chromiumPath = '/usr/bin/chromium';

/** A skip reason when Chromium is missing; in CI a missing Chromium is an error, never a skip. */
export function chromiumMissing(): false | string {
  try {
    statSync(chromiumPath);
    return false;
  } catch {
    if (inCI) throw new Error('required infrastructure missing in CI: chromium (run npm run testbed)');
    return 'chromium is not installed (run npm run testbed)';
  }
}

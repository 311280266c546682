#!/usr/bin/env node
// `node agent/dist/src/main.js [flags]`: the agent as a process (what `warmpool agent` runs).
import { agentMain } from './run.js';

agentMain(process.argv.slice(2)).then((code) => process.exit(code), (err: unknown) => {
  process.stderr.write(`warmpool agent: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});

import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** `npm run bench -- NAME [args]`: runs test/bench/NAME.ts's exported run(args). */
const here = path.dirname(fileURLToPath(import.meta.url));
const candidates = readdirSync(here)
  .filter((f) => f.endsWith('.js') && f !== 'run.js')
  .map((f) => f.slice(0, -3))
  .sort();
const [name, ...args] = process.argv.slice(2);
if (!name || !candidates.includes(name)) {
  // Benchmarks are the modules that export run(args); the others are their helpers.
  const available: string[] = [];
  for (const c of candidates) {
    const m = (await import(`./${c}.js`)) as { run?: unknown };
    if (typeof m.run === 'function') available.push(c);
  }
  process.stderr.write(`usage: npm run bench -- NAME [args]\nbenchmarks: ${available.join(', ')}\n`);
  process.exit(2);
}
const mod = (await import(`./${name}.js`)) as { run?: (args: string[]) => Promise<void> };
if (typeof mod.run !== 'function') {
  process.stderr.write(`benchmark ${name} exports no run(args)\n`);
  process.exit(2);
}
await mod.run(args);
// Benchmarks close what they start; leftover handles (client pools) must not keep us alive.
process.exit(0);

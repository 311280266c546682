// applyHeapGrowingPercent sets V8's heap growing factor for the process: a process that keeps
// a large map and replaces its values (what a router's registry copy does) holds a much
// smaller heap with 25 than with V8's own factor. Each setting runs in its own process.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { applyHeapGrowingPercent } from '../src/index.js';

const start = fileURLToPath(new URL('../src/start.js', import.meta.url));

/** Peak heapTotal (MB) while churning a 100,000-entry map with the given setting (undefined: not called). */
function heapAfterChurn(percent: number | undefined): number {
  const script = `
    import { applyHeapGrowingPercent } from ${JSON.stringify(start)};
    ${percent === undefined ? '' : `applyHeapGrowingPercent(${percent});`}
    const live = new Map();
    let peak = 0;
    for (let r = 0; r < 1_500_000; r++) {
      live.set(r % 100_000, { a: 'v'.repeat(40) + r, b: [r, r + 1] });
      if (r % 20_000 === 0) peak = Math.max(peak, process.memoryUsage().heapTotal);
    }
    process.stdout.write(String(peak / 1048576));
  `;
  const out = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 120_000 });
  if (out.status !== 0) throw new Error(`child failed: ${out.stderr}`);
  return Number(out.stdout);
}

t.test('a lower growing percent keeps the heap of a churning process smaller', async (t) => {
  const v8Own = heapAfterChurn(undefined);
  const zero = heapAfterChurn(0);
  const tight = heapAfterChurn(25);
  t.ok(tight < v8Own * 0.75, `heap with 25%: ${tight.toFixed(0)} MB, with V8's own factor: ${v8Own.toFixed(0)} MB`);
  t.ok(zero > tight * 1.3, `0 leaves V8's own factor: ${zero.toFixed(0)} MB`);
});

t.test('values outside 0..300 are refused', async (t) => {
  for (const v of [-1, 301, 1.5, Number.NaN]) t.throws(() => applyHeapGrowingPercent(v), RangeError, `${v}`);
});

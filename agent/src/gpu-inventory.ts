import { execFile } from 'node:child_process';
import type { GpuDevice } from '@warmpool/registry';

/**
 * The host's GPUs. Source of the format: `nvidia-smi --help-query-gpu`; with
 * `--format=csv,noheader,nounits` each GPU is one line `index, uuid, name, memory.total`
 * (memory in MiB), e.g. `0, GPU-5f1c..., NVIDIA H100 80GB HBM3, 81559`.
 */
export const NVIDIA_SMI_ARGS = ['--query-gpu=index,uuid,name,memory.total', '--format=csv,noheader,nounits'];

/**
 * Parses nvidia-smi's CSV (NVIDIA_SMI_ARGS) into devices whose id is the index, the id
 * `docker run --gpus '"device=0,1"'` takes. Throws on a line that is not in that format.
 */
export function parseNvidiaSmi(text: string): GpuDevice[] {
  const out: GpuDevice[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const cols = line.split(',').map((c) => c.trim());
    // A name may hold commas: index and uuid first, memory last, the name in between.
    if (cols.length < 4 || !/^\d+$/.test(cols[0]!)) throw new Error(`unexpected nvidia-smi line: ${JSON.stringify(line)}`);
    const mem = Number(cols[cols.length - 1]);
    out.push({
      id: cols[0]!, uuid: cols[1]!, name: cols.slice(2, -1).join(', '),
      ...(Number.isFinite(mem) ? { memoryMb: mem } : {}),
    });
  }
  return out;
}

/** Runs nvidia-smi: `{devices}`, `{}` when it is not installed (ENOENT), `{error}` when it fails (no driver). */
export function detectNvidiaGpus(timeoutMs = 10_000): Promise<{ devices?: GpuDevice[]; error?: string }> {
  return new Promise((resolve) => {
    execFile('nvidia-smi', NVIDIA_SMI_ARGS, { timeout: timeoutMs }, (err, stdout) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        resolve(code === 'ENOENT' ? {} : { error: `nvidia-smi failed: ${err.message.split('\n')[0]}` });
        return;
      }
      try {
        resolve({ devices: parseNvidiaSmi(stdout) });
      } catch (e) {
        resolve({ error: (e as Error).message });
      }
    });
  });
}

/**
 * The inventory an agent publishes: the configured devices when given (the operator may keep
 * some GPUs out of Warmpool's hands), else nvidia-smi's when detection is on and it answers,
 * else none.
 */
export async function resolveGpuInventory(
  cfg: { detect: boolean; devices?: GpuDevice[] | undefined },
  detect: () => Promise<{ devices?: GpuDevice[]; error?: string }> = detectNvidiaGpus,
): Promise<{ devices: GpuDevice[]; source: 'config' | 'nvidia-smi' | 'none'; error?: string }> {
  if (cfg.devices) {
    const ids = new Set<string>();
    for (const d of cfg.devices) {
      if (ids.has(d.id)) throw new Error(`gpus.devices: GPU ${d.id} is listed twice`);
      ids.add(d.id);
    }
    return { devices: cfg.devices, source: 'config' };
  }
  if (!cfg.detect) return { devices: [], source: 'none' };
  const r = await detect();
  if (r.devices) return { devices: r.devices, source: 'nvidia-smi' };
  return { devices: [], source: 'none', ...(r.error ? { error: r.error } : {}) };
}

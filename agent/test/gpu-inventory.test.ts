import t from 'tap';
import { parseNvidiaSmi, resolveGpuInventory } from '../src/gpu-inventory.js';

// `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits` on a
// host with two GPUs (the documented CSV: one line per GPU, ", " between fields, MiB).
const SMI = `0, GPU-4d6c8a2e-1b3f-7c9d-0e5a-6f7b8c9d0e1f, NVIDIA H100 80GB HBM3, 81559
1, GPU-9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4, NVIDIA H100 80GB HBM3, 81559
`;

t.test('nvidia-smi CSV: one device per line, the index as the device-request id', async (t) => {
  t.same(parseNvidiaSmi(SMI), [
    { id: '0', uuid: 'GPU-4d6c8a2e-1b3f-7c9d-0e5a-6f7b8c9d0e1f', name: 'NVIDIA H100 80GB HBM3', memoryMb: 81559 },
    { id: '1', uuid: 'GPU-9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4', name: 'NVIDIA H100 80GB HBM3', memoryMb: 81559 },
  ]);
  t.same(parseNvidiaSmi(''), [], 'no GPUs');
  t.same(parseNvidiaSmi('3, GPU-x, Tesla T4, [N/A]\n'), [{ id: '3', uuid: 'GPU-x', name: 'Tesla T4' }], 'memory not reported');
  t.equal(parseNvidiaSmi('0, GPU-x, Some, Name, With Commas, 100')[0]!.name, 'Some, Name, With Commas');
  t.throws(() => parseNvidiaSmi('No devices were found'), /unexpected nvidia-smi line/);
});

t.test('inventory: configured devices win, else nvidia-smi, else none', async (t) => {
  const smi = async () => ({ devices: parseNvidiaSmi(SMI) });
  t.match(await resolveGpuInventory({ detect: true, devices: [{ id: '2' }] }, smi), { source: 'config', devices: [{ id: '2' }] });
  t.match(await resolveGpuInventory({ detect: true }, smi), { source: 'nvidia-smi', devices: [{ id: '0' }, { id: '1' }] });
  t.same(await resolveGpuInventory({ detect: true }, async () => ({})), { source: 'none', devices: [] }, 'nvidia-smi absent');
  t.match(await resolveGpuInventory({ detect: true }, async () => ({ error: 'nvidia-smi failed: no driver' })), { devices: [], error: /no driver/ });
  t.same(await resolveGpuInventory({ detect: false }, smi), { source: 'none', devices: [] }, 'detection off');
  await t.rejects(resolveGpuInventory({ detect: false, devices: [{ id: '1' }, { id: '1' }] }), /listed twice/);
});

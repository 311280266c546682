import net from 'node:net';

/** Asks the kernel for a free TCP port on 127.0.0.1 (port 0), then releases it. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') return reject(new Error('no port'));
      srv.close(() => resolve(addr.port));
    });
  });
}

export async function freePorts(n: number): Promise<number[]> {
  const out = new Set<number>();
  // Bounded: kernel hands out distinct ephemeral ports almost always.
  for (let i = 0; out.size < n && i < n * 10; i++) out.add(await freePort());
  if (out.size < n) throw new Error(`could not find ${n} free ports`);
  return [...out];
}

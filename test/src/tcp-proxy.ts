import net from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 that a test can cut: `suspend()` destroys every connection and
 * refuses new ones, `resume()` lets them through again. Simulates a partition between a
 * client and etcd.
 */
export interface TcpProxy {
  port: number;
  url: string;
  suspend(): void;
  resume(): void;
  /**
   * Delays every answer (upstream to client) by `ms` from now on, in order; 0 stops it. A
   * slow server: requests arrive at once, answers late.
   */
  delayAnswers(ms: number): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }, scheme = 'http'): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let suspended = false;
  let delayMs = 0;
  const server = net.createServer((client) => {
    if (suspended) return client.destroy();
    const upstream = net.connect(target.port, target.host);
    sockets.add(client);
    sockets.add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    // Answers wait in order; each leaves `delayMs` after it arrived, never before an older one.
    const queue: { at: number; chunk: Buffer }[] = [];
    let timer: NodeJS.Timeout | undefined;
    const pump = (): void => {
      timer = undefined;
      while (queue.length && queue[0]!.at <= Date.now()) {
        const { chunk } = queue.shift()!;
        if (!client.destroyed) client.write(chunk);
      }
      if (queue.length) timer = setTimeout(pump, queue[0]!.at - Date.now());
    };
    upstream.on('data', (chunk: Buffer) => {
      if (delayMs === 0 && queue.length === 0) { client.write(chunk); return; }
      queue.push({ at: Date.now() + delayMs, chunk });
      if (!timer) timer = setTimeout(pump, Math.max(0, queue[0]!.at - Date.now()));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const suspend = (): void => {
    suspended = true;
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  return {
    port,
    url: `${scheme}://127.0.0.1:${port}`,
    suspend,
    resume() {
      suspended = false;
    },
    delayAnswers(ms: number) {
      delayMs = ms;
    },
    async close() {
      suspend();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

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
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }, scheme = 'http'): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let suspended = false;
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
    upstream.pipe(client);
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
    async close() {
      suspend();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

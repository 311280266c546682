import http from 'node:http';

/** GET on a sidecar's status endpoint through its published port (adoption after a restart). */
export function fetchSidecarStatus<T>(address: string, statusPath: string, timeoutMs = 2000): Promise<T | undefined> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: statusPath, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        if (res.statusCode !== 200) { resolve(undefined); return; }
        try { resolve(JSON.parse(body) as T); } catch { resolve(undefined); }
      });
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
}

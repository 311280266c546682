import http from 'node:http';
import { REPORT_HEADER, reportPath, type StateReport } from '@warmpool/sidecar/protocol';

/** Posts a sidecar state report to an agent's socket, as a sidecar does; resolves with the status. */
export function postReport(socketPath: string, id: string, token: string, body: StateReport): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method: 'POST', path: reportPath(id), headers: { 'content-type': 'application/json', [REPORT_HEADER]: token } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

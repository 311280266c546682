import cluster from 'node:cluster';
import { main } from './program.js';

main(process.argv).then((code) => {
  if (code !== 0) process.exitCode = code;
  // A router worker's channel to its primary keeps the process alive after its command has
  // ended (failed to start, or stopped): leave, so the primary sees the exit.
  if (cluster.isWorker) process.exit(code);
});

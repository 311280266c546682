import { main } from './program.js';

main(process.argv).then((code) => {
  if (code !== 0) process.exitCode = code;
});

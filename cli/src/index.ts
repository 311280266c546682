export * from './program.js';
export * from './commands.js';
export * from './status.js';
export * from './durations.js';

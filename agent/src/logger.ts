import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines to stderr (stdout stays free for command output). */
export function createLogger(level = 'info', bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { component: 'agent', ...bindings } }, pino.destination({ fd: 2, sync: false }));
}

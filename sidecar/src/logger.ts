/** The sidecar logs JSON lines to stderr (no dependency: the image bundle stays small). */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Logger = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

export function jsonLogger(base: Record<string, unknown>, write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  return (level, msg, fields) => {
    write(`${JSON.stringify({ time: Date.now(), level, msg, ...base, ...fields })}\n`);
  };
}

export const silentLogger: Logger = () => {};

import type { Command } from 'commander';

/** `warmpool agent`, `warmpool router`, `warmpool sidecar`: long-running processes. */
export function daemonCommands(): Command[] {
  return [];
}

/**
 * The `lost` notification of a kept lease (etcd or Consul): fires once; a listener added
 * after it fired is still told (on the next microtask).
 */
export class LostSignal {
  private listeners: ((reason: string) => void)[] = [];
  private reason: string | undefined;

  on(listener: (reason: string) => void): void {
    if (this.reason !== undefined) {
      const reason = this.reason;
      queueMicrotask(() => listener(reason));
      return;
    }
    this.listeners.push(listener);
  }

  fire(reason: string): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    const listeners = this.listeners;
    this.listeners = [];
    for (const fn of listeners) fn(reason);
  }
}

/** Time as the sidecar sees it; tests pass a fake one. */
export interface Clock {
  now(): number;
  /** Runs fn after ms; returns a cancel function. */
  setTimeout(fn: () => void, ms: number): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};

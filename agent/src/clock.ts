// The shared clock: see registry/src/clock.ts.
export { type Clock, systemClock, sleep } from '@warmpool/registry/clock';

// The shared clock: see registry/src/clock.ts.
export { type Clock, systemClock } from '@warmpool/registry/clock';

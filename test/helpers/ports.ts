/** The host-port range the tests allocate from (set by test/setup/ports.ts). */
import { portRange } from '../../src/registry/ports.js';

export const RANGE = portRange(process.env);

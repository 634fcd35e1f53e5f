/** Loopback ports for test servers, and the host-port range the tests allocate from. */
import { createServer, type AddressInfo } from 'node:net';
import { portRange } from '../../src/registry/ports.js';

/** A TCP port free on 127.0.0.1 right now (the OS picks it; the caller binds it soon after). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const p = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

/** The host-port range the tests allocate from (set by test/setup/ports.ts). */
export const RANGE = portRange(process.env);

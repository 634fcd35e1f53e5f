/**
 * Default routing of platform operations (SkyPilot `sky/provision/__init__.py` style: each operation is
 * declared once and routed to a shared default when a platform has none). Here: platforms that declare a
 * `forwarder` get, from src/forwarder/, the forwarder's stop (with the service), the "forwarder is down"
 * note in `status`, and `restartForwarder` for `tao-infer tunnel`.
 */
import { InvalidInputError } from '../errors.js';
import { restartForwarder, stopForwarder, withForwarderNote } from '../forwarder/forwarder.js';
import type { EntryContext, JobState, PlatformAdapter, RegistryEntry, StopOutcome } from '../types.js';

/** A platform adapter with the routed operations every platform answers. */
export interface Platform extends PlatformAdapter {
  /** The adapter's stop, then the forwarder's; resolves what the adapter found (`already_gone`). */
  stop(entry: RegistryEntry, ctx: EntryContext): Promise<StopOutcome>;
  /**
   * `tao-infer tunnel`: start the entry's local forwarder again when it is gone. Resolves the registry
   * fields to update (a new forwarder_pid, ...), or {} when it is alive.
   * @throws InvalidInputError when the platform has no forwarder; what `restartForwarder` (src/forwarder) throws.
   */
  restartForwarder(entry: RegistryEntry, ctx: EntryContext): Promise<Partial<RegistryEntry>>;
}

/** Wrap an adapter with the default operations. */
export function route(adapter: PlatformAdapter): Platform {
  const fwd = adapter.forwarder;
  return Object.assign(Object.create(adapter) as PlatformAdapter, {
    async status(entry: RegistryEntry, ctx: EntryContext): Promise<JobState> {
      const st = await adapter.status(entry, ctx);
      return fwd ? withForwarderNote(st, entry, fwd.kind) : st;
    },
    async stop(entry: RegistryEntry, ctx: EntryContext): Promise<StopOutcome> {
      try {
        return (await adapter.stop(entry, ctx)) ?? {};
      } finally {
        if (fwd || entry.forwarder_pid !== undefined) await stopForwarder(entry, ctx);
      }
    },
    async restartForwarder(entry: RegistryEntry, ctx: EntryContext): Promise<Partial<RegistryEntry>> {
      if (!fwd) throw new InvalidInputError('<job_id>', `${entry.platform} services have no local forwarder to restart`);
      return restartForwarder(entry, fwd, ctx);
    },
  });
}

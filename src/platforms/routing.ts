/**
 * Default routing of platform operations (SkyPilot `sky/provision/__init__.py` style: each operation is
 * declared once and routed to a shared default when a platform has none). Here: platforms that declare a
 * `forwarder` get, from src/forwarder/, the forwarder's stop (with the service), the "forwarder is down"
 * note in `status`, and `restartForwarder` for `tao-infer tunnel`.
 */
import { InvalidInputError } from '../errors.js';
import { restartForwarder, stopForwarder, withForwarderNote } from '../forwarder/forwarder.js';
import type { EntryContext, JobState, LogOptions, PlatformAdapter, RegistryEntry, StopOutcome } from '../types.js';
import { applyEntryDefaults, type EntryDefault } from './entry-defaults.js';

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

/**
 * Wrap an adapter with the default operations. `entryDefaults` (the descriptor's) fill platform data an
 * entry lacks before every operation on an existing entry: `status` reports the default used as `note`,
 * `logs`, `stop` and `restartForwarder` as a warning.
 */
export function route(adapter: PlatformAdapter, entryDefaults?: readonly EntryDefault[]): Platform {
  const fwd = adapter.forwarder;
  const filled = (entry: RegistryEntry, ctx: EntryContext, warn: boolean): RegistryEntry => {
    const r = applyEntryDefaults(entry, entryDefaults, ctx.env);
    if (r.note && warn) ctx.warn(`${entry.job_id}: ${r.note}`);
    return r.entry;
  };
  return Object.assign(Object.create(adapter) as PlatformAdapter, {
    async status(given: RegistryEntry, ctx: EntryContext): Promise<JobState> {
      const { entry, note } = applyEntryDefaults(given, entryDefaults, ctx.env);
      let st: JobState;
      try {
        st = await adapter.status(entry, ctx);
      } catch (err) {
        // With a default standing in, the user must learn which one even when the platform could not be asked.
        if (!note) throw err;
        return { state: 'unknown', reason: (err as Error).message.split('\n')[0], note };
      }
      const out = fwd ? withForwarderNote(st, entry, fwd.kind) : st;
      return note ? { ...out, note } : out;
    },
    logs(entry: RegistryEntry, opts: LogOptions, ctx: EntryContext): AsyncIterable<string> {
      return adapter.logs(filled(entry, ctx, true), opts, ctx);
    },
    async stop(given: RegistryEntry, ctx: EntryContext): Promise<StopOutcome> {
      const entry = filled(given, ctx, true);
      try {
        return (await adapter.stop(entry, ctx)) ?? {};
      } finally {
        if (fwd || entry.forwarder_pid !== undefined) await stopForwarder(entry, ctx);
      }
    },
    async restartForwarder(entry: RegistryEntry, ctx: EntryContext): Promise<Partial<RegistryEntry>> {
      if (!fwd) throw new InvalidInputError('<job_id>', `${entry.platform} services have no local forwarder to restart`);
      return restartForwarder(filled(entry, ctx, true), fwd, ctx);
    },
  });
}

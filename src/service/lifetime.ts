/**
 * Service lifetimes seen from the registry (issue 10 point 6): an entry's `expires_at` (ISO-8601 UTC, from
 * `start --max-duration` or the Slurm time limit) compared with the clock.
 */
import type { RegistryEntry } from '../types.js';
import { formatSpan } from '../util/duration.js';

/** `request` warns when a service's expiry is this close (seconds). */
export const EXPIRY_WARNING_S = 600;

/**
 * The warning `request` gives before sending to a service that is past its `expires_at` or within
 * EXPIRY_WARNING_S of it; undefined when it has no (parseable) expiry or it is further away.
 * @param now epoch ms
 */
export function expiryWarning(entry: Pick<RegistryEntry, 'job_id' | 'expires_at'>, now = Date.now()): string | undefined {
  const t = typeof entry.expires_at === 'string' ? Date.parse(entry.expires_at) : NaN;
  if (!Number.isFinite(t)) return undefined;
  const left = (t - now) / 1000;
  if (left <= 0) return `service ${entry.job_id} expired ${formatSpan(-left)} ago (expires_at ${entry.expires_at}); it may be ending or gone — 'tao-infer ls' shows its state`;
  if (left <= EXPIRY_WARNING_S) return `service ${entry.job_id} expires in ${formatSpan(left)} (expires_at ${entry.expires_at}); a long request may be cut off`;
  return undefined;
}

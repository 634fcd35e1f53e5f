/**
 * Durations typed by people (`start --max-duration 90m`) and relative times shown to them (`ls` AGE and
 * EXPIRES: `12m`, `in 3h`, `5m ago`).
 */
import { InvalidInputError } from '../errors.js';

const UNIT_SECONDS: ReadonlyMap<string, number> = new Map([
  ['s', 1],
  ['m', 60],
  ['h', 3600],
  ['d', 86400],
]);

/** Shortest max duration accepted (seconds): anything shorter cannot even load a model. */
export const MIN_DURATION_S = 60;

/**
 * Parse a duration: one or more `<whole number><unit>` parts, units `s`, `m`, `h`, `d` (e.g. `90m`, `4h`,
 * `1d`, `1h30m`). Result in whole seconds, at least MIN_DURATION_S.
 * @param flag the flag named in the error
 * @throws InvalidInputError for anything else (a bare number, an unknown unit, zero, under a minute)
 */
export function parseDuration(raw: string, flag = '--max-duration'): number {
  const text = String(raw).trim().toLowerCase();
  const hint = 'Use a number with a unit: s, m, h or d, e.g. 90m, 4h, 1d or 1h30m.';
  if (!/^(\d+[smhd])+$/.test(text)) throw new InvalidInputError(flag, `${flag} '${raw}' is not a duration`, { hint });
  let total = 0;
  for (const m of text.matchAll(/(\d+)([smhd])/g)) total += Number(m[1]) * UNIT_SECONDS.get(m[2]!)!;
  if (!Number.isSafeInteger(total) || total < MIN_DURATION_S)
    throw new InvalidInputError(flag, `${flag} '${raw}' is shorter than ${MIN_DURATION_S / 60} minute`, { hint });
  return total;
}

/** A span in its largest whole unit: `42s`, `12m`, `3h`, `2d` (seconds, negative taken as positive). */
export function formatSpan(seconds: number): string {
  const s = Math.abs(Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 48 * 3600) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** Age of an ISO-8601 timestamp at `now` (epoch ms): `12m`; `-` when it does not parse. */
export function formatAge(iso: string | undefined, now = Date.now()): string {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isFinite(t) ? formatSpan(Math.max(0, (now - t) / 1000)) : '-';
}

/** A future or past instant relative to `now`: `in 3h`, `5m ago`; `-` when absent or unparseable. */
export function formatUntil(iso: string | undefined, now = Date.now()): string {
  const t = iso ? Date.parse(iso) : NaN;
  if (!Number.isFinite(t)) return '-';
  return t >= now ? `in ${formatSpan((t - now) / 1000)}` : `${formatSpan((now - t) / 1000)} ago`;
}

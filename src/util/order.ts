/**
 * Sort order for text that is compared by code units: ISO-8601 UTC timestamps (`started_at`) sort by time this
 * way. Unlike `localeCompare`, it needs no ICU collator, whose first use costs ~5 ms of CLI start-up (issue 9).
 */

/** -1, 0 or 1 as `a` sorts before, with or after `b` by UTF-16 code units. */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

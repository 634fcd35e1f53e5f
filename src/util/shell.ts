/**
 * POSIX shell quoting for building `/bin/sh -c` strings and for showing argv to people.
 * The quoting is the standard single-quote form: every byte survives a real `/bin/sh -c`
 * unchanged (quotes, spaces, `$`, backticks, newlines, non-ASCII).
 */

const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quote one word for POSIX sh. Words made only of safe characters are returned as they are. */
export function shQuote(word: string): string {
  if (word !== '' && SAFE_WORD.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Quote one word always with single quotes (for the contract's `'<JOB_JSON>'` shape). */
export function shQuoteAlways(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Render an argv as one copy-pasteable shell line. */
export function formatArgv(argv: readonly string[]): string {
  return argv.map(shQuote).join(' ');
}

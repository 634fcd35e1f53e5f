/**
 * The `ls` table for people (issue 10 point 7): 8-character job_ids (full with `--wide`), AGE and EXPIRES
 * relative to now, the state word coloured when the output is a colour terminal, the platform's detail
 * (native state, reason, note) last and cut to the terminal width (full with `--wide`), and a footnote
 * explaining the `*` that marks the latest service.
 */
import type { ListedService } from '../manage.js';
import { SHORT_JOB_ID } from '../service/routing.js';
import { formatAge, formatUntil } from '../util/duration.js';

export interface LsTableOptions {
  /** `latest` of the registry: marked with `*` and explained below the table. */
  latest?: string;
  /** Epoch ms the relative times are computed from. */
  now: number;
  /** Terminal columns; undefined = no limit (output is not a terminal and COLUMNS is unset). */
  width?: number;
  /** Full job_ids and full detail, whatever the width. */
  wide: boolean;
  /** Colour the state words (stdout is a TTY and NO_COLOR is unset). */
  color: boolean;
}

/**
 * SGR colour per live state word (`gone` included). Plain ANSI codes rather than util.styleText, which
 * needs Node ≥ 20.12 while package.json allows any Node 20.
 */
const STATE_SGR: ReadonlyMap<string, number> = new Map([
  ['running', 32], // green
  ['pending', 33], // yellow
  ['error', 31], // red
  ['gone', 31],
  ['complete', 90], // grey
  ['canceled', 90],
  ['unknown', 35], // magenta
]);

/** Below this many columns the DETAIL column is not shortened further (the table then wraps). */
const MIN_DETAIL = 12;

/**
 * Whether `ls` output gets colours: stdout is a TTY and `NO_COLOR` is unset or empty (no-color.org).
 * @param stream defaults to process.stdout
 */
export function useColor(env: NodeJS.ProcessEnv = process.env, stream: { isTTY?: boolean } = process.stdout): boolean {
  return Boolean(stream.isTTY) && !(env.NO_COLOR ?? '').length;
}

/** Width to fit: the terminal's columns, else `COLUMNS`, else none. */
export function terminalWidth(env: NodeJS.ProcessEnv = process.env, stream: { isTTY?: boolean; columns?: number } = process.stdout): number | undefined {
  if (stream.isTTY && stream.columns) return stream.columns;
  const c = Number(env.COLUMNS);
  return Number.isInteger(c) && c > 0 ? c : undefined;
}

/** Cut `s` to `n` characters, marking the cut with `…`. */
export function truncate(s: string, n: number): string {
  return s.length <= n ? s : n <= 1 ? s.slice(0, n) : `${s.slice(0, n - 1)}…`;
}

/** What EXPIRES shows: `in 3h` / `5m ago` for an expires_at, `idle 30m` for an idle timeout only, else `-`. */
function expires(s: ListedService, now: number): string {
  if (typeof s.expires_at === 'string') return formatUntil(s.expires_at, now);
  if (typeof s.idle_timeout_minutes === 'number') return `idle ${s.idle_timeout_minutes}m`;
  return '-';
}

/** The platform's detail: `(native) exit N; reason; note: ...`, without repeating the state word. */
function detail(s: ListedService): string {
  const l = s.live;
  const head = [l.native && l.native !== l.state ? `(${l.native})` : '', l.exit_code !== undefined ? `exit ${l.exit_code}` : ''].filter(Boolean).join(' ');
  return [head, l.reason ?? '', l.note ? `note: ${l.note}` : ''].filter(Boolean).join('; ');
}

/**
 * Render the table (no trailing newline). The last column (DETAIL) is cut so each line fits `width`
 * unless `wide`; the other columns keep their full text.
 */
export function renderLsTable(services: ListedService[], o: LsTableOptions): string {
  const head = ['JOB_ID', 'ARCH', 'PLATFORM', 'STATE', 'AGE', 'EXPIRES', 'URL', 'DETAIL'];
  const rows = services.map((s) => [
    (o.wide ? s.job_id : s.job_id.slice(0, SHORT_JOB_ID)) + (s.job_id === o.latest ? '*' : ''),
    s.network_arch,
    s.platform,
    s.live.state,
    formatAge(s.started_at, o.now),
    expires(s, o.now),
    s.host_url || '-',
    detail(s),
  ]);
  const all = [head, ...rows];
  const widths = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const last = head.length - 1;
  if (!o.wide && o.width !== undefined) {
    const fixed = widths.slice(0, last).reduce((a, b) => a + b, 0) + 2 * last;
    widths[last] = Math.max(Math.min(widths[last]!, o.width - fixed), Math.min(widths[last]!, MIN_DETAIL));
  }
  const line = (r: string[], isHead: boolean) =>
    r
      .map((c, i) => {
        if (i === last) return truncate(c, widths[i]!);
        const padded = c.padEnd(widths[i]!);
        const sgr = i === 3 && !isHead && o.color ? STATE_SGR.get(c) : undefined;
        return sgr ? `\u001b[${sgr}m${c}\u001b[39m${padded.slice(c.length)}` : padded;
      })
      .join('  ')
      .trimEnd();
  const out = [line(head, true), ...rows.map((r) => line(r, false))];
  const foot: string[] = [];
  if (o.latest && services.some((s) => s.job_id === o.latest)) foot.push("* = latest (the one 'tao-infer stop --yes' stops)");
  if (!o.wide && services.some((s) => s.job_id.length > SHORT_JOB_ID))
    foot.push(`job_ids show their first ${SHORT_JOB_ID} characters; any unique prefix of 4+ works (full ids: --wide, --json)`);
  if (foot.length) out.push('', foot.join('; '));
  return out.join('\n');
}

/**
 * Turns the platform descriptors' PlatformOptionSpec declarations into flags of `start`, `stop` and `ls`
 * (one flag even when two platforms declare it) and back into option values for one platform: flag, else
 * the env var, else the default; a missing required one is prompted on a TTY or is a usage error naming the flag.
 */
import { Option, type CommandUnknownOpts } from '@commander-js/extra-typings';
import { InvalidInputError, MissingInputError } from '../errors.js';
import { PLATFORMS } from '../platforms/index.js';
import type { Capability, PlatformName, PlatformOptionSpec } from '../types.js';
import { askSelect, askText } from './io.js';

function longName(flags: string): string {
  const m = /--([a-z0-9-]+)/.exec(flags);
  if (!m) throw new Error(`bad option flags: ${flags}`);
  return m[1]!;
}

/** commander attribute name of a flag (`--no-x` → `x`, `--slurm-host` → `slurmHost`). */
function attrName(flags: string): string {
  return longName(flags)
    .replace(/^no-/, '')
    .replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** Commands that take platform flags. */
export type PlatformCommand = 'start' | 'stop' | 'ls' | 'discover';

function specsOf(platform: string, command: PlatformCommand): PlatformOptionSpec[] {
  return PLATFORMS.find((d) => d.name === platform)?.options[command as 'start'] ?? [];
}

/** Add every platform's flags for `command` to `cmd` once; flags `cmd` already declares (its own) are skipped. */
export function addPlatformFlags(cmd: CommandUnknownOpts, command: PlatformCommand = 'start'): void {
  const taken = new Set(cmd.options.map((o) => longName(o.flags).replace(/^no-/, '')));
  const seen = new Map<string, string[]>();
  for (const d of PLATFORMS) {
    for (const s of specsOf(d.name, command)) {
      const platform = d.name;
      const long = longName(s.flags);
      const owners = seen.get(long);
      if (owners) {
        owners.push(platform);
        continue;
      }
      if (taken.has(long)) continue;
      seen.set(long, [platform]);
    }
  }
  for (const [long, owners] of seen) {
    const specs = owners.map((p) => [p, specsOf(p, command).find((s) => longName(s.flags) === long)!] as const);
    const spec = specs[0]![1];
    // A flag shared by several platforms shows each platform's own description.
    const desc = specs.map(([p, s]) => `[${p}] ${s.description}${s.env ? ` (env ${s.env})` : ''}`).join('; ');
    const opt = new Option(spec.flags, desc);
    if (spec.repeatable) opt.argParser(collect);
    if (spec.choices) opt.choices(spec.choices);
    cmd.addOption(opt);
  }
}

function coerce(spec: PlatformOptionSpec, raw: unknown, source: string): unknown {
  if (raw === undefined) return undefined;
  if (spec.repeatable) return Array.isArray(raw) ? raw : String(raw).split(',').filter(Boolean);
  if (typeof raw === 'boolean') return raw;
  const s = String(raw);
  if (spec.integer) {
    if (!/^\d+$/.test(s.trim())) throw new InvalidInputError(longFlag(spec), `${source} must be a whole number, got '${s}'`);
    return Number(s);
  }
  if (spec.choices && !spec.choices.includes(s))
    throw new InvalidInputError(longFlag(spec), `${source} must be one of ${spec.choices.join(', ')}, got '${s}'`);
  if (/^--[a-z0-9-]+$/.test(spec.flags.trim())) {
    // boolean flag given through the environment
    return s === '1' || s.toLowerCase() === 'true' || s.toLowerCase() === 'yes';
  }
  return s;
}

function longFlag(spec: PlatformOptionSpec): string {
  return `--${longName(spec.flags)}`;
}

/**
 * Collect option values for `platform` from parsed flags / env / defaults / prompts, in the order of the
 * platform's options table. A required option without a value is asked on a TTY: as a choice among the
 * option's `choices` or what `suggest(key, gathered so far)` finds on the platform, else as free text.
 * @throws MissingInputError (required, not interactive), InvalidInputError (bad value)
 */
export async function platformOptionValues(
  platform: PlatformName,
  parsed: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
  interactive: boolean,
  suggest?: (key: string, gathered: Record<string, unknown>) => Promise<string[] | undefined>,
  command: PlatformCommand = 'start',
): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const spec of specsOf(platform, command)) {
    const flag = longFlag(spec);
    let v = coerce(spec, parsed[attrName(spec.flags)], flag);
    if (v === undefined && spec.env && env[spec.env] !== undefined && env[spec.env] !== '') v = coerce(spec, env[spec.env], `$${spec.env}`);
    if (v === undefined && spec.required) {
      if (!interactive) throw new MissingInputError(flag, `${spec.description}${spec.env ? ` (or set ${spec.env})` : ''}`);
      const choices = spec.choices ?? (await suggest?.(spec.key, { ...out }));
      const answer = choices?.length
        ? await askSelect(`${spec.description}`, choices.map((c) => ({ name: c, value: c })))
        : await askText(`${spec.description} (${flag})`, { validate: (x) => (x.trim() ? true : `${flag} is required`) });
      v = coerce(spec, answer, flag);
    }
    if (v === undefined && spec.askIfInteractive && interactive) {
      const answer = (await askText(`${spec.description} (${flag}; Enter to skip)`)).trim();
      if (answer) v = coerce(spec, answer, flag);
    }
    if (v === undefined) v = spec.default;
    if (v !== undefined) out[spec.key] = v;
  }
  return out;
}

/**
 * The platform flags of `command` given on the command line, keyed by the platforms declaring them:
 * `{ brev: { deleteInstance: true } }`. Flags no platform declares are ignored (they belong to the command).
 */
export function givenPlatformFlags(parsed: Record<string, unknown>, command: PlatformCommand): Map<string, { flags: string[]; values: Record<string, unknown> }> {
  const out = new Map<string, { flags: string[]; values: Record<string, unknown> }>();
  for (const d of PLATFORMS) {
    for (const spec of specsOf(d.name, command)) {
      const v = parsed[attrName(spec.flags)];
      if (v === undefined || v === false) continue;
      const e = out.get(d.name) ?? { flags: [], values: {} };
      e.flags.push(longFlag(spec));
      e.values[spec.key] = v;
      out.set(d.name, e);
    }
  }
  return out;
}

/**
 * Which platforms can run a capability (those whose descriptor does not declare it unsupported), for help texts.
 */
export function platformsSupporting(cap: Capability): string {
  return PLATFORMS.filter((d) => !(cap in d.unsupported)).map((d) => d.name).join(', ');
}

/**
 * Validated reference data cached per user, keyed by the hashes of the reference files (issue 9: validate
 * `references/` once per version, not on every run).
 *
 * File: `references.json` in the user's cache directory, read and written as src/util/cache-dir.ts does
 * (`$XDG_CACHE_HOME/tao-infer/`, default `~/.cache/tao-infer/`; atomic, mode 0600 in a 0700 dir). Key: sha256
 * over the cache format and the name and sha256 of `references/service.yaml`, `references/request.yaml`,
 * `versions.yaml` and every `references/*.config.json`, so an edit to any of them, a new version or another
 * install with other files validates again. A cache that is missing, larger than 4 MiB, not the user's own
 * private file, does not parse or has another key is ignored (and rewritten after the next validation); a cache
 * that cannot be written is skipped silently (the run validates every time).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir, readCacheFile, writeCacheFile } from '../util/cache-dir.js';
import type { ReferenceData } from './schema.js';

const FORMAT = 'tao-infer references cache v1';
const MAX_CACHE_BYTES = 4 * 1024 * 1024;

/**
 * Cache key of the reference files under `root` (their names are `archConfigNames` plus the three fixed files).
 * Reads each file (a few KiB each). @throws when a fixed file cannot be read (the caller validates and reports it)
 */
export function referencesKey(root: string, archConfigNames: string[]): string {
  const h = createHash('sha256').update(FORMAT);
  const files = ['references/service.yaml', 'references/request.yaml', 'versions.yaml', ...archConfigNames.map((n) => `references/${n}`)];
  for (const f of files) h.update(`\0${f}\0`).update(createHash('sha256').update(readFileSync(join(root, f))).digest('hex'));
  return h.digest('hex');
}

/** The cached data for `key`, or undefined (no cache, another key, or a cache to ignore). Never throws. */
export function readCache(key: string, env: NodeJS.ProcessEnv = process.env): ReferenceData | undefined {
  const dir = cacheDir(env);
  const bytes = dir === undefined ? undefined : readCacheFile(join(dir, 'references.json'), MAX_CACHE_BYTES);
  if (!bytes) return undefined;
  try {
    const obj = JSON.parse(bytes.toString('utf8')) as { format?: unknown; key?: unknown; data?: ReferenceData };
    const d = obj?.data;
    if (obj.format !== FORMAT || obj.key !== key || !d || typeof d !== 'object') return undefined;
    if (!d.service || !d.request || !d.versions || !d.archConfigs || typeof d.archConfigs !== 'object') return undefined;
    return d;
  } catch {
    return undefined;
  }
}

/** Store `data` under `key` (atomic; failures are ignored: the cache is an optimisation). */
export function writeCache(key: string, data: ReferenceData, env: NodeJS.ProcessEnv = process.env): void {
  const dir = cacheDir(env);
  if (dir) writeCacheFile(join(dir, 'references.json'), JSON.stringify({ format: FORMAT, key, data }));
}

/**
 * Running the CLI bundle with a V8 code cache (the bin, src/cli/launcher.ts, calls `runWithCodeCache`), so a run
 * loads the functions an earlier run of the same command compiled instead of parsing and compiling them again
 * (issue 9, Build 6: start-up; bench/start-path.mjs and bench/cli-startup.mjs print what it saves).
 *
 * - One cache file per command (`start`, `ls`, ..., and apart `help`, `version`, `start-dry-run`: `commandKey`),
 *   since each compiles other functions: `<cache dir>/code/<bundle sha256>-<mtime>.<inode>-<node version>-<arch>-
 *   <key>.v8` (cache dir: src/util/cache-dir.ts).
 * - Made with `vm.Script#createCachedData` (Node's documented code-cache API) when a run that had no usable cache
 *   exits with code 0, so it holds what that run compiled. Written and read as src/util/cache-dir.ts does (atomic,
 *   mode 0600 in a 0700 directory; used only when it is this user's private regular file of at most
 *   MAX_CACHE_BYTES). Files of other bundles or Node versions older than PRUNE_AFTER_MS are removed on a write.
 * - V8 checks a cache against its own version and flags, but of the source only its length, and a release build
 *   keeps no checksum of it: the file name carries the bundle's sha256 (fixed at build time by scripts/bundle.mjs)
 *   and the bundle file's mtime and inode (a bundle edited in place, even to the same length, misses), and only
 *   this user can change the file. A cache V8 rejects is rewritten. Nothing is made (no `createCachedData`, a few
 *   ms) when the cache directory cannot be written.
 * - `TAO_INF_CODE_CACHE=0` turns it off (so does an unknown cache directory): the bundle is then compiled from
 *   source, as `require` would. The bundle is a CommonJS module body already inside Node's module wrapper
 *   (BUNDLE_HEAD … BUNDLE_TAIL, written by scripts/bundle.mjs), so its text is the script as it is read, with no
 *   copy to wrap it; and it has no `import()` (the build turns each into `require`), since code run by `vm.Script`
 *   gets none without an experimental flag.
 * - Never changes what the CLI does or prints: a cache that cannot be read or written is skipped silently.
 *
 * Why not a library: v8-compile-cache makes its cache before the code runs (only what V8 compiles eagerly; start
 * measured 90 ms with it, 78 ms with this); Node's own `module.enableCompileCache` needs Node 22.
 */
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';
import { cacheDir, readCacheFile, writableCacheDir, writeCacheFile } from '../util/cache-dir.js';

/** How the bundle starts and ends: Node's CommonJS module wrapper around the module body (scripts/bundle.mjs). */
export const BUNDLE_HEAD = '(function (exports, require, module, __filename, __dirname) {';
export const BUNDLE_TAIL = '\n})';

/** Largest cache file read (a cache of the whole bundle is about 1 MiB). */
const MAX_CACHE_BYTES = 32 * 1024 * 1024;
/** Cache files of other bundles or Node versions are removed once this old (ms), when a new one is written. */
const PRUNE_AFTER_MS = 7 * 24 * 3600 * 1000;

/**
 * The cache's name for a command line: its command word (the first argument not starting with '-'; 'main' without
 * one, 'other' when it is not a plain lower-case word), with `-dry-run` appended for --dry-run; 'help' for any
 * --help/-h or `help`, 'version' for --version/-V. A cache holds what its first run compiled and is kept while V8
 * accepts it, so runs that take another path through the code (help, a dry run) get caches of their own.
 */
export function commandKey(argv: readonly string[]): string {
  if (argv.some((a) => a === '--help' || a === '-h')) return 'help';
  if (argv.some((a) => a === '--version' || a === '-V')) return 'version';
  const word = argv.find((a) => !a.startsWith('-'));
  if (word === undefined) return 'main';
  if (word === 'help') return 'help';
  if (!/^[a-z][a-z0-9-]{0,31}$/.test(word)) return 'other';
  return argv.includes('--dry-run') ? `${word}-dry-run` : word;
}

/** Write the cache, then remove week-old files of other bundles or Node versions (and stale temp files). */
function writeCache(dir: string, file: string, data: Buffer, keepPrefix: string): void {
  if (!writeCacheFile(file, data)) return;
  try {
    const now = Date.now();
    for (const name of readdirSync(dir)) {
      if (name.startsWith(keepPrefix)) continue;
      const p = join(dir, name);
      if (now - statSync(p).mtimeMs > PRUNE_AFTER_MS) rmSync(p, { force: true });
    }
  } catch {
    /* the cache is an optimisation */
  }
}

/**
 * Run the CLI bundle `bundle` (a CommonJS module body inside BUNDLE_HEAD … BUNDLE_TAIL; its code sees `require`,
 * `module`, `__filename` as under Node's loader and must not call `import()`) with the code cache described above;
 * `sha256` is the bundle's, `argv` the command line after the script (names the cache), `env` gives
 * TAO_INF_CODE_CACHE and the cache directory.
 * @throws Error when `bundle` is not such a file; what the bundle throws while it is first evaluated
 */
export function runWithCodeCache(bundle: string, sha256: string, argv: readonly string[], env: NodeJS.ProcessEnv = process.env): void {
  const base = env.TAO_INF_CODE_CACHE === '0' ? undefined : cacheDir(env);
  const fd = openSync(bundle, 'r');
  let text: string;
  let identity: string;
  try {
    const st = fstatSync(fd);
    identity = `${Math.trunc(st.mtimeMs)}.${st.ino}`;
    text = readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
  if (!text.startsWith(BUNDLE_HEAD))
    throw new Error(`${bundle} is not a bundle of this tao-infer (run npm run build, or reinstall tao-infer)`);
  const dir = base === undefined ? undefined : join(base, 'code');
  const prefix = `${sha256}-${identity}-${process.version}-${process.arch}-`;
  const file = dir === undefined ? undefined : join(dir, `${prefix}${commandKey(argv)}.v8`);
  const cachedData = file === undefined ? undefined : readCacheFile(file, MAX_CACHE_BYTES);
  const script = new Script(text, { filename: bundle, cachedData });
  if (dir !== undefined && file !== undefined && (cachedData === undefined || script.cachedDataRejected)) {
    process.once('exit', (code) => {
      if (code === 0 && writableCacheDir(dir)) writeCache(dir, file, script.createCachedData(), prefix);
    });
  }
  const wrapper = script.runInThisContext() as (e: object, r: NodeJS.Require, m: object, f: string, d: string) => void;
  const mod = { exports: {} };
  wrapper.call(mod.exports, mod.exports, createRequire(bundle), mod, bundle, dirname(bundle));
}

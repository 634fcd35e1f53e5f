// The published bin (package.json `bin`) is the launcher made by `npm run build` (scripts/bundle.mjs): it runs the
// CLI bundle dist/bin/cli.cjs with a V8 code cache (src/cli/code-cache.ts).
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BUNDLE_HEAD, commandKey } from '../../src/cli/code-cache.js';
import { nodeSupported } from '../../src/cli/node-version.js';
import { CLI, ROOT } from '../helpers/cli.js';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));

function* tsFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* tsFiles(p);
    else if (name.endsWith('.ts')) yield p;
  }
}

describe('the tao-infer bin', () => {
  it('is the launcher, executable, with a node shebang, and runs without `node` in front', () => {
    expect(pkg.bin['tao-infer']).toBe('dist/bin/tao-infer.cjs');
    expect(pkg.files).toContain('dist/bin');
    expect(statSync(CLI).mode & 0o111).toBe(0o111);
    expect(readFileSync(CLI, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
    expect(execFileSync(CLI, ['--version'], { encoding: 'utf8' }).trim()).toBe(pkg.version);
  });

  it('runs on the Node versions that require() ES modules without a flag, and says so on others', () => {
    for (const v of ['20.19.0', '20.20.2', '22.12.0', '22.20.1', '23.0.0', '24.1.0']) expect(nodeSupported(v), v).toBe(true);
    for (const v of ['18.20.0', '20.0.0', '20.18.3', '21.7.3', '22.11.0']) expect(nodeSupported(v), v).toBe(false);
    expect(nodeSupported(process.versions.node)).toBe(true);
    expect(pkg.engines.node).toBe('^20.19.0 || >=22.12.0');
    // The bin on an older Node (its reported version replaced by a preload): a clear error, exit 1, nothing run.
    const dir = mkdtempSync(join(tmpdir(), 'tao-old-node-'));
    try {
      writeFileSync(join(dir, 'old.cjs'), "Object.defineProperty(process, 'versions', { value: { ...process.versions, node: '20.10.0' } });");
      const r = spawnSync(process.execPath, ['--require', join(dir, 'old.cjs'), CLI, '--version'], { encoding: 'utf8' });
      expect(r.status).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain('tao-infer needs Node.js ^20.19.0 || >=22.12.0; this is v20.10.0');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps heavy SDKs out of the bundle (loaded from node_modules by the platforms that need them)', () => {
    const cli = readFileSync(join(ROOT, 'dist', 'bin', 'cli.cjs'), 'utf8');
    expect(cli).toMatch(/require\("@kubernetes\/client-node"\)/);
    expect(cli).toMatch(/require\("ssh2"\)/);
    expect(cli).toMatch(/require\("undici"\)/);
    const bundled = readdirSync(join(ROOT, 'dist', 'bin'))
      .filter((f) => f.endsWith('.js') || f.endsWith('.cjs'))
      .map((f) => readFileSync(join(ROOT, 'dist', 'bin', f), 'utf8'))
      .join('\n');
    expect(bundled).not.toMatch(/class KubeConfig\b/);
    expect(bundled).not.toMatch(/class SFTP\b/); // ssh2 internals
    // Code run through vm.Script (the code cache) has no import(): the build turns each into require().
    expect(cli).not.toMatch(/\bimport\(/);
    // A module body in Node's CommonJS wrapper, strict as the ES modules it was written as.
    expect(cli.startsWith(`${BUNDLE_HEAD}\n"use strict";\n`)).toBe(true);
  });

  it('bundles every script an adapter starts as a detached process next to the chunks that start it', () => {
    const scripts = new Set<string>();
    for (const f of tsFiles(join(ROOT, 'src'))) for (const m of readFileSync(f, 'utf8').matchAll(/new URL\(\s*'\.\/([\w.-]+\.js)'\s*,\s*import\.meta\.url\s*\)/g)) scripts.add(m[1]!);
    expect(scripts.size).toBeGreaterThan(0);
    for (const s of scripts) expect(existsSync(join(ROOT, 'dist', 'bin', s)), s).toBe(true);
  });
});

describe('the code cache of the bin (src/cli/code-cache.ts)', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  /** A private cache home, and a way to run the real bin with it. */
  function cacheHome() {
    const home = mkdtempSync(join(tmpdir(), 'tao-code-cache-'));
    dirs.push(home);
    const codeDir = join(home, 'tao-infer', 'code');
    const run = (args: string[], env: Record<string, string> = {}) =>
      spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, CI: 'true', NO_COLOR: '1', XDG_CACHE_HOME: home, ...env }, encoding: 'utf8' });
    const files = () => (existsSync(codeDir) ? readdirSync(codeDir).sort() : []);
    return { home, codeDir, run, files };
  }

  it('names the cache by the command, with help, version and dry runs apart', () => {
    expect(commandKey(['start', '--arch', 'cosmos-rl'])).toBe('start');
    expect(commandKey(['--json', 'ls'])).toBe('ls');
    expect(commandKey(['start', '--dry-run', '--arch', 'x'])).toBe('start-dry-run');
    expect(commandKey(['start', '--help'])).toBe('help');
    expect(commandKey(['help', 'start'])).toBe('help');
    expect(commandKey(['-h'])).toBe('help');
    expect(commandKey(['--version'])).toBe('version');
    expect(commandKey([])).toBe('main');
    expect(commandKey(['../x'])).toBe('other');
    expect(commandKey(['LS'])).toBe('other');
  });

  it('is written after a successful run, private, named by bundle, Node and command, and reused unchanged', () => {
    const c = cacheHome();
    const first = c.run(['archs', '--json']);
    expect(first.status).toBe(0);
    const sha = readFileSync(join(ROOT, 'dist', 'bin', 'tao-infer.cjs'), 'utf8').match(/[0-9a-f]{64}/)?.[0];
    expect(sha).toBeDefined();
    const st = statSync(join(ROOT, 'dist', 'bin', 'cli.cjs'));
    const name = `${sha}-${Math.trunc(st.mtimeMs)}.${st.ino}-${process.version}-${process.arch}-archs.v8`;
    expect(c.files()).toEqual([name]);
    expect(statSync(join(c.codeDir, name)).mode & 0o777).toBe(0o600);
    expect(statSync(c.codeDir).mode & 0o777).toBe(0o700);
    const before = readFileSync(join(c.codeDir, name));
    const mtime = statSync(join(c.codeDir, name)).mtimeMs;
    const second = c.run(['archs', '--json']);
    expect(second.status).toBe(0);
    expect(second.stdout).toBe(first.stdout);
    // Accepted by V8, so not written again.
    expect(statSync(join(c.codeDir, name)).mtimeMs).toBe(mtime);
    expect(readFileSync(join(c.codeDir, name)).equals(before)).toBe(true);
  });

  it('a cache V8 rejects, or one others may write, is not used and is replaced; the output never changes', () => {
    const c = cacheHome();
    const ok = c.run(['archs', '--json']);
    expect(ok.status).toBe(0);
    const [name] = c.files();
    const file = join(c.codeDir, name!);
    const good = readFileSync(file);
    writeFileSync(file, Buffer.alloc(good.length, 7));
    const garbage = c.run(['archs', '--json']);
    expect(garbage.status).toBe(0);
    expect(garbage.stdout).toBe(ok.stdout);
    expect(readFileSync(file).equals(Buffer.alloc(good.length, 7))).toBe(false);

    chmodSync(file, 0o666);
    const shared = c.run(['archs', '--json']);
    expect(shared.stdout).toBe(ok.stdout);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('a bundle rewritten in place (same length) is never run with the cache of what it was', () => {
    const c = cacheHome();
    // A copy of the bin and its bundle, so the bundle can be rewritten without touching dist/.
    const bin = mkdtempSync(join(tmpdir(), 'tao-bin-copy-'));
    dirs.push(bin);
    for (const f of ['tao-infer.cjs', 'cli.cjs']) writeFileSync(join(bin, f), readFileSync(join(ROOT, 'dist', 'bin', f)));
    const run = () => spawnSync(process.execPath, [join(bin, 'tao-infer.cjs'), '--version'], { env: { ...process.env, XDG_CACHE_HOME: c.home }, encoding: 'utf8' });
    expect(run().status).toBe(0);
    expect(c.files()).toHaveLength(1);
    const text = readFileSync(join(bin, 'cli.cjs'));
    writeFileSync(join(bin, 'cli.cjs'), text); // same length (and bytes), same inode, a new mtime: another cache
    // The rewrite's own mtime may fall in the same tick on a filesystem with coarse timestamps: make it later.
    utimesSync(join(bin, 'cli.cjs'), new Date(), new Date(Date.now() + 5000));
    const again = run();
    expect(again.status).toBe(0);
    expect(c.files()).toHaveLength(2);
  });

  it('writes nothing after a failed run or with TAO_INF_CODE_CACHE=0', () => {
    const c = cacheHome();
    const typo = c.run(['strat']);
    expect(typo.status).toBe(2);
    expect(c.files()).toEqual([]);
    const off = c.run(['archs', '--json'], { TAO_INF_CODE_CACHE: '0' });
    expect(off.status).toBe(0);
    expect(JSON.parse(off.stdout)).toEqual(expect.any(Array));
    expect(c.files()).toEqual([]);
  });

  it('removes week-old caches of other bundles when it writes one, and keeps recent ones', () => {
    const c = cacheHome();
    expect(c.run(['--version']).status).toBe(0);
    const old = join(c.codeDir, `${'0'.repeat(64)}-v0.0.0-x64-ls.v8`);
    const recent = join(c.codeDir, `${'1'.repeat(64)}-v0.0.0-x64-ls.v8`);
    writeFileSync(old, 'x', { mode: 0o600 });
    writeFileSync(recent, 'x', { mode: 0o600 });
    const eightDaysAgo = (Date.now() - 8 * 24 * 3600 * 1000) / 1000;
    utimesSync(old, eightDaysAgo, eightDaysAgo);
    expect(c.run(['archs', '--json']).status).toBe(0);
    expect(existsSync(old)).toBe(false);
    expect(existsSync(recent)).toBe(true);
  });
});

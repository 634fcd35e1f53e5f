// Bundles the CLI into dist/bin/ with esbuild (issue 9, Build 6). Run by `npm run build`. Three builds:
//   1. `dist/bin/cli.cjs`: src/cli/main.ts and everything it reaches as one CommonJS module body, inside Node's
//      module wrapper (src/cli/code-cache.ts BUNDLE_HEAD/BUNDLE_TAIL), so it is run only by the bin. Commands and platform
//      adapters stay lazy (their `import()` becomes a function run on first use), and large dependencies only some
//      commands use stay external, loaded from node_modules when needed: the SDKs (@kubernetes/client-node, ssh2),
//      the gateway's (undici, prom-client), the prompt library (@inquirer/prompts) and docker-modem (image pulls).
//   2. `dist/bin/tao-infer.cjs`, the published bin (package.json `bin`): src/cli/launcher.ts, which runs cli.cjs with
//      a V8 code cache (src/cli/code-cache.ts). cli.cjs's sha256 is built into it, so a cache is never used for
//      another bundle. One CommonJS file is what Node 20 can cache (it has no code cache for ES modules).
//   3. Scripts that the adapters start as detached processes through `new URL('./<name>.js', import.meta.url)`,
//      found in src/ and bundled as ES modules of the same name beside cli.cjs (with shared chunks), so that URL
//      resolves in dist/bin/ too.
// The library (package.json `main`/`exports`, types) stays tsc's output in dist/src/.
import { build } from 'esbuild';
import { BUNDLE_HEAD, BUNDLE_TAIL } from '../dist/src/cli/code-cache.js';
import { createHash } from 'node:crypto';
import { chmodSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const OUT = join(ROOT, 'dist', 'bin');
const SRC = join(ROOT, 'src');

function* tsFiles(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* tsFiles(p);
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) yield p;
  }
}

/** Detached entry scripts: `new URL('./x.js', import.meta.url)` in src → { x: src/.../x.ts }. */
function detachedEntries() {
  const entries = {};
  for (const file of tsFiles(SRC)) {
    for (const m of readFileSync(file, 'utf8').matchAll(/new URL\(\s*'\.\/([\w.-]+)\.js'\s*,\s*import\.meta\.url\s*\)/g)) {
      const target = join(dirname(file), `${m[1]}.ts`);
      if (entries[m[1]] && entries[m[1]] !== target) throw new Error(`two detached scripts named ${m[1]}.js: ${entries[m[1]]} and ${target}`);
      entries[m[1]] = target;
    }
  }
  return entries;
}

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  minifySyntax: true,
  minifyWhitespace: true,
  minifyIdentifiers: true,
  keepNames: true,
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
};
// CommonJS output has no import.meta: its url is this file's, as in the ES module it was written as.
const cjsImportMeta = {
  define: { 'import.meta.url': '__taoImportMetaUrl' },
  banner: { js: "var __taoImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
};

rmSync(OUT, { recursive: true, force: true });

await build({
  ...common,
  define: cjsImportMeta.define,
  entryPoints: { cli: join(SRC, 'cli', 'main.ts') },
  outdir: OUT,
  outExtension: { '.js': '.cjs' },
  format: 'cjs',
  external: ['@kubernetes/client-node', 'ssh2', 'undici', 'prom-client', '@inquirer/prompts', 'docker-modem'],
  // Each import() becomes a require(): code run by vm.Script (the code cache) has no import() without a flag.
  // @kubernetes/client-node is an ES module: require() loads it on Node >= 20.19 (package.json engines).
  supported: { 'dynamic-import': false },
  // proper-lockfile requires graceful-fs, which patches node:fs on load, but uses it only when a call passes no
  // `fs` of its own; every call of ours passes one (src/registry/lock.ts). The bin skips loading it.
  alias: { 'graceful-fs': 'node:fs' },
  // The module body inside Node's CommonJS wrapper: the launcher compiles the file's text as it is (code-cache.ts).
  // Strict mode first, as the ES modules it was written as are (esbuild's own "use strict" comes after the banner).
  banner: { js: `${BUNDLE_HEAD}\n"use strict";\n${cjsImportMeta.banner.js}` },
  footer: { js: BUNDLE_TAIL.replace(/^\n/, '') },
  sourcemap: 'linked',
});
if (/\bimport\(/.test(readFileSync(join(OUT, 'cli.cjs'), 'utf8'))) throw new Error('dist/bin/cli.cjs still calls import(): the code cache cannot run it');
const cliSha256 = createHash('sha256').update(readFileSync(join(OUT, 'cli.cjs'))).digest('hex');

await build({
  ...common,
  entryPoints: { 'tao-infer': join(SRC, 'cli', 'launcher.ts') },
  outdir: OUT,
  outExtension: { '.js': '.cjs' },
  format: 'cjs',
  define: { ...cjsImportMeta.define, __TAO_CLI_SHA256__: JSON.stringify(cliSha256) },
  banner: { js: `#!/usr/bin/env node\n${cjsImportMeta.banner.js}` },
});
chmodSync(join(OUT, 'tao-infer.cjs'), 0o755);

const detached = await build({
  ...common,
  entryPoints: detachedEntries(),
  outdir: OUT,
  splitting: true,
  format: 'esm',
  chunkNames: 'chunk-[hash]',
  external: ['@kubernetes/client-node', 'ssh2'],
  // CommonJS dependencies bundled into the ES modules call require() for node built-ins.
  banner: { js: "import { createRequire as __taoCreateRequire } from 'node:module'; const require = __taoCreateRequire(import.meta.url);" },
  sourcemap: 'linked',
});

const kib = (f) => `${(statSync(f).size / 1024).toFixed(0)} KiB`;
const scripts = Object.keys(detached.metafile.outputs).filter((f) => f.endsWith('.js')).length;
console.log(
  `bundled ${relative(ROOT, join(OUT, 'cli.cjs'))} (${kib(join(OUT, 'cli.cjs'))}, sha256 ${cliSha256.slice(0, 12)}), ` +
    `the bin ${relative(ROOT, join(OUT, 'tao-infer.cjs'))} and ${scripts} detached scripts/chunks in ${relative(ROOT, OUT)}/`,
);

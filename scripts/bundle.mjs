// Bundles the CLI into dist/bin/ with esbuild (issue 9, Build 6): `dist/bin/tao-infer.js` is the published bin
// (package.json `bin`), one file holding the CLI, the library and its small dependencies (commander, execa, yaml,
// zod, proper-lockfile), so start-up reads one module instead of some hundred. Code split: each platform adapter
// and the prompt library stay lazy chunks (`import()` in src/platforms/index.ts and src/cli/io.ts), and the large
// SDKs (@kubernetes/client-node, ssh2) stay external, loaded from node_modules only by the platforms that need them.
// Scripts that the adapters start as detached processes through `new URL('./<name>.js', import.meta.url)` are found
// in src/ and bundled as entries of the same name beside the chunks, so that URL resolves in dist/bin/ too.
// The library (package.json `main`/`exports`, types) stays tsc's output in dist/src/. Run by `npm run build`.
import { build } from 'esbuild';
import { chmodSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';

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

const entryPoints = { 'tao-infer': join(SRC, 'cli', 'main.ts'), ...detachedEntries() };
rmSync(OUT, { recursive: true, force: true });
const result = await build({
  entryPoints,
  outdir: OUT,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  chunkNames: '[name]-[hash]',
  external: ['@kubernetes/client-node', 'ssh2'],
  // CommonJS dependencies (proper-lockfile, cross-spawn, ...) call require() for node built-ins.
  banner: { js: "import { createRequire as __taoCreateRequire } from 'node:module'; const require = __taoCreateRequire(import.meta.url);" },
  minifySyntax: true,
  minifyWhitespace: true,
  minifyIdentifiers: true,
  keepNames: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
});
chmodSync(join(OUT, 'tao-infer.js'), 0o755);
const outputs = Object.entries(result.metafile.outputs).filter(([f]) => f.endsWith('.js'));
const main = outputs.find(([f]) => basename(f) === 'tao-infer.js');
console.log(`bundled ${relative(ROOT, main[0])} (${(main[1].bytes / 1024).toFixed(0)} KiB) + ${outputs.length - 1} chunks/entries in ${relative(ROOT, OUT)}/`);

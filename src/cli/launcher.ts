/**
 * The published bin (package.json `bin`: dist/bin/tao-infer.cjs, built from this file by scripts/bundle.mjs): checks
 * the Node version, then runs the CLI bundle `dist/bin/cli.cjs` (src/cli/main.ts and all it reaches, one CommonJS
 * file) beside it, with the V8 code cache of src/cli/code-cache.ts.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runWithCodeCache } from './code-cache.js';
import { SUPPORTED_NODE, nodeSupported } from './node-version.js';

/** sha256 (hex) of dist/bin/cli.cjs, set by scripts/bundle.mjs (esbuild `define`). */
declare const __TAO_CLI_SHA256__: string;

if (!nodeSupported(process.versions.node)) {
  process.stderr.write(`error: tao-infer needs Node.js ${SUPPORTED_NODE}; this is v${process.versions.node}.\nhint: install a newer Node.js (e.g. the current LTS) and run it again.\n`);
  process.exitCode = 1;
} else {
  runWithCodeCache(join(dirname(fileURLToPath(import.meta.url)), 'cli.cjs'), __TAO_CLI_SHA256__, process.argv.slice(2));
}

/**
 * The published bin (package.json `bin`: dist/bin/tao-infer.cjs, built from this file by scripts/bundle.mjs): runs
 * the CLI bundle `dist/bin/cli.cjs` (src/cli/main.ts and all it reaches, one CommonJS file) beside it, with the V8
 * code cache of src/cli/code-cache.ts.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runWithCodeCache } from './code-cache.js';

/** sha256 (hex) of dist/bin/cli.cjs, set by scripts/bundle.mjs (esbuild `define`). */
declare const __TAO_CLI_SHA256__: string;

runWithCodeCache(join(dirname(fileURLToPath(import.meta.url)), 'cli.cjs'), __TAO_CLI_SHA256__, process.argv.slice(2));

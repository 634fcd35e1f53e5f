// Records every module URL the process resolves, to prove which commands load @kubernetes/client-node.
// Use: NODE_OPTIONS="--import=<this file>" TAO_TEST_LOAD_LOG=<file> node dist/bin/tao-infer.js ...
// On the main thread it registers itself as a module customization hook (node:module register, Node >= 20.6);
// in the hooks thread its `resolve` hook appends each resolved URL to $TAO_TEST_LOAD_LOG (one per line).
// ESM imports (the CLI, its lazily imported adapters, and @kubernetes/client-node, an ES module) all pass
// through `resolve`.
import { appendFileSync } from 'node:fs';
import { register } from 'node:module';
import { isMainThread } from 'node:worker_threads';

let logFile;

export async function initialize(data) {
  logFile = data?.logFile;
}

export async function resolve(specifier, context, nextResolve) {
  const r = await nextResolve(specifier, context);
  if (logFile) appendFileSync(logFile, `${r.url}\n`);
  return r;
}

if (isMainThread && process.env.TAO_TEST_LOAD_LOG) {
  register(import.meta.url, { data: { logFile: process.env.TAO_TEST_LOAD_LOG } });
}

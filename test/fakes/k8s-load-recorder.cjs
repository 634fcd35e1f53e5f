// Records what the CLI loads, to prove which commands load @kubernetes/client-node.
// Use: NODE_OPTIONS="--require=<this file>" TAO_TEST_LOAD_LOG=<file> node dist/bin/tao-infer.cjs ...
// The bin runs the CommonJS bundle dist/bin/cli.cjs, which loads its dependencies with require() (the SDKs are
// left out of the bundle; @kubernetes/client-node, an ES module, through require(esm)). Each require() passes
// through Module.prototype.require, so this preload wraps it and appends what each resolves to (a file path, or
// the `node:` name of a built-in) to $TAO_TEST_LOAD_LOG, one per line.
'use strict';
const { appendFileSync } = require('node:fs');
const Module = require('node:module');

const logFile = process.env.TAO_TEST_LOAD_LOG;
if (logFile) {
  const original = Module.prototype.require;
  Module.prototype.require = function (id) {
    let resolved = id;
    try {
      const bare = id.replace(/^node:/, '');
      resolved = Module.builtinModules.includes(bare) ? `node:${bare}` : Module.createRequire(this.filename).resolve(id);
    } catch {
      /* recorded as asked; the require below reports the error */
    }
    appendFileSync(logFile, `${resolved}\n`);
    return original.apply(this, arguments);
  };
}

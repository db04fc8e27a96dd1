// Runs a bundle of agentcell's through V8's code cache written beside it (`FILE.cache`) and
// returns its exports: compiling a bundle is a third of agentcell's start-up. A cache that
// does not match this node (another version, other flags) is ignored by V8, and the bundle
// is compiled as usual. AGENTCELL_WRITE_CODE_CACHE=1 (the build's warm-up) writes the cache
// at exit, with whatever the process compiled by then.
'use strict';
const { readFileSync, writeFileSync } = require('node:fs');
const { Script } = require('node:vm');
const { createRequire, wrap } = require('node:module');
const { dirname } = require('node:path');

module.exports = function runCachedBundle(file) {
  const cacheFile = `${file}.cache`;
  let cachedData;
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  const script = new Script(wrap(readFileSync(file, 'utf8')), { filename: file, cachedData });
  if (process.env.AGENTCELL_WRITE_CODE_CACHE === '1')
    process.once('exit', () => writeFileSync(cacheFile, script.createCachedData()));
  const module_ = { exports: {}, filename: file, id: file, loaded: false };
  script.runInThisContext().call(module_.exports, module_.exports, createRequire(file), module_, file, dirname(file));
  return module_.exports;
};

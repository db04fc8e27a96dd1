#!/usr/bin/env node
// agentcell's entry point. It runs the bundled CLI through V8's code cache, which
// `npm run build` writes beside it: compiling the bundle is a third of agentcell's
// start-up, and `run` starts on every agent command. A cache that does not match this
// node (another version, other flags) is ignored by V8, and the CLI is compiled as usual.
'use strict';
const { readFileSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { Script } = require('node:vm');
const { wrap } = require('node:module');

const file = join(__dirname, 'agentcell-main.cjs');
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
script.runInThisContext().call(module_.exports, module_.exports, require, module_, file, __dirname);

// The X.509 code of TLS inspection (reflect-metadata + @peculiar/x509, bundled into
// agentcell-x509-main.cjs by `npm run build`), loaded through V8's code cache like the CLI
// (launcher.cjs): required from node_modules it is a hundred small modules and costs
// ~120 ms, on the path of every run that inspects TLS, before its cell starts (the cell CA).
// The CLI bundle requires this file for both packages; a cache that does not match this
// node is ignored by V8, and the bundle is compiled as usual.
'use strict';
const { readFileSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { Script } = require('node:vm');
const { wrap } = require('node:module');

const file = join(__dirname, 'agentcell-x509-main.cjs');
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
module.exports = module_.exports;

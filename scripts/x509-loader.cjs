// The X.509 code of TLS inspection (reflect-metadata + @peculiar/x509, bundled into
// agentcell-x509-main.cjs by `npm run build`), loaded through V8's code cache like the CLI
// (cached-bundle.cjs): required from node_modules it is a hundred small modules and costs
// ~120 ms, on the path of every run that inspects TLS, before its cell starts (the cell CA).
// The CLI bundle requires this file for both packages.
'use strict';
module.exports = require('./agentcell-cached-bundle.cjs')(
  require('node:path').join(__dirname, 'agentcell-x509-main.cjs'),
);

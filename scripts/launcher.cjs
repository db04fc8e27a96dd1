#!/usr/bin/env node
// agentcell's entry point: the bundled CLI, run through the V8 code cache that `npm run
// build` writes beside it (cached-bundle.cjs); `run` starts on every agent command.
'use strict';
require('./agentcell-cached-bundle.cjs')(require('node:path').join(__dirname, 'agentcell-main.cjs'));

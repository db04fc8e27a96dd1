// Bundles the CLI into one minified CommonJS file: agentcell run's start-up is on every
// agent's critical path. Loading ~200 small ESM files costs more than the sandbox itself,
// and even one ESM entry costs node ~18 ms more than a CommonJS one.
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';

const outfile = 'dist/agentcell.cjs';
await build({
  entryPoints: ['src/cli/main.ts'],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  minify: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  banner: { js: '#!/usr/bin/env node' },
  logLevel: 'warning',
});
chmodSync(outfile, 0o755);

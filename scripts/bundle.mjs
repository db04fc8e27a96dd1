// Bundles the CLI into one file: agentcell run's start-up is on every agent's
// critical path, and loading ~200 small ESM files costs more than the sandbox itself.
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';

const outfile = 'dist/agentcell.mjs';
await build({
  entryPoints: ['src/cli/main.ts'],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minifySyntax: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  banner: {
    js: "#!/usr/bin/env node\nimport { createRequire as __agentcellRequire } from 'node:module';\nconst require = __agentcellRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
chmodSync(outfile, 0o755);

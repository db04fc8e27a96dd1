// Bundles the CLI into one minified CommonJS file and writes V8's code cache for it:
// agentcell run's start-up is on every agent's critical path. Loading ~200 small ESM
// files costs more than the sandbox itself, one ESM entry costs ~18 ms more than a
// CommonJS one, and compiling the bundle without a cache another ~19 ms.
// Not a V8 start-up snapshot (`node --snapshot-blob`): tried on Node 20.20, the blob of this
// bundle is 10 MB and starting from it was no faster than the code cache plus running the
// module bodies (101 vs 108 ms for --version, slower for `run`, whose functions it holds
// uncompiled); it also needs node's own flag, which a `#!/usr/bin/env node` bin can't pass with
// a path beside it, and it can't hold net.BlockList and other native handles made at load.
// Start-up is kept small instead: commands other than run/shell/agents load their modules on use.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const main = 'dist/agentcell-main.cjs';
const launcher = join(process.cwd(), 'dist/agentcell.cjs');
const x509Main = 'dist/agentcell-x509-main.cjs';
const x509Loader = join(process.cwd(), 'dist/agentcell-x509.cjs');

// The CLI requires both X.509 packages through x509-loader.cjs, which runs their bundle
// (reflect-metadata first: @peculiar/x509 needs its polyfill) through V8's code cache.
const x509Apart = {
  name: 'x509-apart',
  setup(b) {
    b.onResolve({ filter: /^(@peculiar\/x509|reflect-metadata)$/ }, () => ({
      path: './agentcell-x509.cjs',
      external: true,
    }));
  },
};
await build({
  stdin: {
    contents: "require('reflect-metadata');\nmodule.exports = require('@peculiar/x509');\n",
    resolveDir: process.cwd(),
    sourcefile: 'x509-entry.cjs',
  },
  outfile: x509Main,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  minify: true,
  legalComments: 'linked',
  logLevel: 'warning',
});
copyFileSync('scripts/cached-bundle.cjs', 'dist/agentcell-cached-bundle.cjs');
// The egress bridge, bound into gateway cells and run by their node (a directory rootfs's may be older).
await build({
  entryPoints: ['src/egress/cell/cell-bridge-main.ts'],
  outfile: 'dist/agentcell-bridge.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node18',
  minify: true,
  logLevel: 'warning',
});
copyFileSync('scripts/x509-loader.cjs', x509Loader);
rmSync(`${x509Main}.cache`, { force: true });
await build({
  entryPoints: ['src/cli/main.ts'],
  outfile: main,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  minify: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  logLevel: 'warning',
  // Only TLS inspection uses X.509, so it is a bundle of its own, loaded when a run inspects
  // (not parsed on every start: it would more than double this bundle). See x509-loader.cjs.
  plugins: [x509Apart],
  // Modules find files beside them (the egress bridge script) through import.meta.url.
  define: { 'import.meta.url': 'importMetaUrl' },
  banner: { js: "var importMetaUrl=require('node:url').pathToFileURL(__filename).href;" },
});
// esbuild escapes non-ASCII text in strings but not in tagged templates (the UI's html``, whose
// raw text it would change): one such character and V8 holds the whole bundle's source, which
// every agentcell process keeps for its life, as a two-byte string (2.1 MB, not 1.1). The html
// tag reads the cooked strings, where \uXXXX is the same text. (Columns after such a character
// on its line are off by five in the source map.)
writeFileSync(
  main,
  readFileSync(main, 'utf8').replace(/[^\0-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`),
);
copyFileSync('scripts/launcher.cjs', launcher);
// V8 accepts a code cache whose source has the same length (it checks no more), so the
// warm-up below would reuse the last build's bytecode for a same-length change: start afresh.
rmSync(`${main}.cache`, { force: true });
chmodSync(launcher, 0o755);

// Warm the cache on the path that matters: a dry run compiles everything `run` uses
// and changes nothing.
const scratch = mkdtempSync(join(tmpdir(), 'agentcell-build-'));
try {
  const workspace = join(scratch, 'workspace');
  mkdirSync(workspace);
  const warm = spawnSync(process.execPath, [launcher, 'run', '--dry-run', '--', 'true'], {
    cwd: workspace,
    env: {
      PATH: process.env.PATH,
      HOME: scratch,
      AGENTCELL_HOME: join(scratch, 'home'),
      AGENTCELL_WRITE_CODE_CACHE: '1',
    },
    encoding: 'utf8',
  });
  if (warm.status !== 0) throw new Error(`warming the code cache failed: ${warm.stderr}`);
  // And the X.509 bundle's, on what an inspecting run does with it (a cell CA, a leaf).
  const warmX509 = spawnSync(process.execPath, ['scripts/warm-x509-cache.cjs', x509Loader], {
    env: { PATH: process.env.PATH, AGENTCELL_WRITE_CODE_CACHE: '1' },
    encoding: 'utf8',
  });
  if (warmX509.status !== 0) throw new Error(`warming the X.509 code cache failed: ${warmX509.stderr}`);
  // The man page is rendered from the commander definitions, so it ships matching the CLI.
  const man = spawnSync(process.execPath, [launcher, 'man'], {
    env: { PATH: process.env.PATH, HOME: scratch, AGENTCELL_HOME: join(scratch, 'home') },
    encoding: 'utf8',
  });
  if (man.status !== 0) throw new Error(`rendering the man page failed: ${man.stderr}`);
  writeFileSync('dist/agentcell.1', man.stdout);
  // So is the JSON Schema of agentcell.toml (from the zod schema), which `init` points editors at.
  const schema = spawnSync(process.execPath, [launcher, 'policy', 'schema'], {
    env: { PATH: process.env.PATH, HOME: scratch, AGENTCELL_HOME: join(scratch, 'home') },
    encoding: 'utf8',
  });
  if (schema.status !== 0) throw new Error(`rendering the policy schema failed: ${schema.stderr}`);
  mkdirSync('schemas', { recursive: true });
  writeFileSync('schemas/agentcell.schema.json', schema.stdout);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

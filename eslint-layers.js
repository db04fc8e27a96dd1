import { dirname, relative, resolve, sep } from 'node:path';

/**
 * agentcell's layers, top first (docs/architecture.md). A file under src/ may import its
 * own layer and the layers below it, never one above, so never in a circle between
 * layers. `only` narrows a layer further. This list is the one place the direction is
 * written; `npm run lint` enforces it (scripts/check-layer-rule.mjs shows it fails).
 */
export const LAYERS = [
  { name: 'cli', what: 'argument parsing and rendering only' },
  { name: 'ui', what: 'local web dashboard' },
  { name: 'index.ts', what: "the library's public API" },
  { name: 'sessions', what: 'detached sessions' },
  { name: 'run', what: 'the run pipeline: prepare, run, finalize, decide' },
  { name: 'agents', what: 'agent adapters' },
  { name: 'evidence', what: 'doctor, canaries, fingerprint, evidence bundles' },
  { name: 'cell', what: 'cell store, locks, lifecycle' },
  { name: 'egress', what: 'the egress gateway' },
  { name: 'images', what: 'rootfs and OCI images for cells' },
  // A backend gets a resolved CellSpec: no policy, egress or workspace code.
  { name: 'backends', what: 'Backend interface, bwrap, oci', only: ['_internal'] },
  { name: 'workspace', what: 'overlay layers, diff, accept' },
  { name: 'receipts', what: 'receipt model, chain, signing' },
  { name: 'policy', what: 'pure data and rules' },
  // Also the files at the top of src/ other than index.ts (errors.ts, paths.ts, version.ts).
  { name: '_internal', what: 'plumbing every layer may use' },
];

/**
 * Edges that break the order today, each with why it stays for now. An entry that no
 * longer matches any import is harmless; delete it when its fix lands.
 */
export const KNOWN_BREAKS = [
  // prepare-run.ts and run-cell.ts are the run pipeline: they move to src/run/ (issue 12, after the merge).
  { from: 'src/cell/prepare-run.ts', to: 'agents' },
  { from: 'src/cell/prepare-run.ts', to: 'evidence' },
  { from: 'src/cell/run-cell.ts', to: 'evidence' },
];

const ROOT = import.meta.dirname;

/** The layer a file belongs to, or undefined outside src/ (tests, benches, scripts). */
export function layerOf(file) {
  const parts = relative(ROOT, file).split(sep);
  if (parts[0] !== 'src' || parts.length < 2) return undefined;
  if (parts.length === 2) return parts[1] === 'index.ts' ? 'index.ts' : '_internal';
  return parts[1];
}

/** Why `from` (a file) may not import `to` (a file), or undefined when it may. */
export function layerViolation(from, to) {
  const a = layerOf(from);
  const b = layerOf(to);
  if (a === undefined || b === undefined || a === b) return undefined;
  const i = LAYERS.findIndex((l) => l.name === a);
  const j = LAYERS.findIndex((l) => l.name === b);
  if (i < 0) return `src/${a}/ is not a layer: add it to LAYERS in eslint-layers.js`;
  if (j < 0) return `src/${b}/ is not a layer: add it to LAYERS in eslint-layers.js`;
  const fromPath = relative(ROOT, from).split(sep).join('/');
  if (KNOWN_BREAKS.some((k) => k.from === fromPath && k.to === b)) return undefined;
  if (j < i)
    return `${a} may not import ${b}, a layer above it (imports go down: ${LAYERS.map((l) => l.name).join(' > ')})`;
  const only = LAYERS[i].only;
  if (only && !only.includes(b)) return `${a} may import only ${only.join(', ')}, not ${b}`;
  return undefined;
}

/** The ESLint rule: every relative import, re-export and dynamic import() of a src/ file. */
const layersRule = {
  meta: { type: 'problem', schema: [], messages: { layer: '{{reason}}' } },
  create(context) {
    const check = (node) => {
      const source = node.source;
      if (!source || source.type !== 'Literal' || typeof source.value !== 'string') return;
      if (!source.value.startsWith('.')) return;
      const target = resolve(dirname(context.filename), source.value).replace(/\.js$/, '.ts');
      const reason = layerViolation(context.filename, target);
      if (reason) context.report({ node: source, messageId: 'layer', data: { reason } });
    };
    return {
      ImportDeclaration: check,
      ExportNamedDeclaration: check,
      ExportAllDeclaration: check,
      ImportExpression: check,
    };
  },
};

export const layersPlugin = { rules: { layers: layersRule } };

// Shows the layer rule bites: lints an upward import (backends -> egress) and a downward
// one with the project's own eslint.config.js; exits 1 unless only the upward one fails.
import { join } from 'node:path';
import { ESLint } from 'eslint';

const root = join(import.meta.dirname, '..');
const eslint = new ESLint({
  cwd: root,
  // Only the layer rule, and no type information: the fixture is not a file on disk.
  overrideConfig: { languageOptions: { parserOptions: { projectService: false, project: null } } },
  ruleFilter: ({ ruleId }) => ruleId === 'agentcell/layers',
});
const fixture = join(root, 'src', 'backends', 'layer-rule-fixture.ts');
const lint = async (code) => (await eslint.lintText(code, { filePath: fixture }))[0].messages;

const upward = await lint(
  "import { withBridge } from '../egress/cell/proxy-environment.js';\nexport { withBridge };\n",
);
const downward = await lint("import { sha256 } from '../_internal/canonical-hash.js';\nexport { sha256 };\n");
const ok = upward.length === 1 && upward[0].ruleId === 'agentcell/layers' && downward.length === 0;
if (!ok) {
  console.error('the layer rule does not hold:', JSON.stringify({ upward, downward }, null, 2));
  process.exit(1);
}
console.log(`layer rule: an upward import fails lint ("${upward[0].message}")`);

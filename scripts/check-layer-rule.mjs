// Shows the layer rule bites: lints upward imports (backends -> egress, and agents -> run,
// the agents/cell cycle issue 12 broke) and a downward one with the project's own
// eslint.config.js; exits 1 unless only the upward ones fail.
import { join } from 'node:path';
import { ESLint } from 'eslint';

const root = join(import.meta.dirname, '..');
const eslint = new ESLint({
  cwd: root,
  // Only the layer rule, and no type information: the fixture is not a file on disk.
  overrideConfig: { languageOptions: { parserOptions: { projectService: false, project: null } } },
  ruleFilter: ({ ruleId }) => ruleId === 'agentcell/layers',
});
const lint = async (layer, code) =>
  (await eslint.lintText(code, { filePath: join(root, 'src', layer, 'layer-rule-fixture.ts') }))[0].messages;

const upward = await lint(
  'backends',
  "import { withBridge } from '../egress/cell/proxy-environment.js';\nexport { withBridge };\n",
);
const cycle = await lint('agents', "import { prepareRun } from '../run/prepare-run.js';\nexport { prepareRun };\n");
const downward = await lint(
  'backends',
  "import { sha256 } from '../_internal/canonical-hash.js';\nexport { sha256 };\n",
);
const refused = (messages) => messages.length === 1 && messages[0].ruleId === 'agentcell/layers';
const ok = refused(upward) && refused(cycle) && downward.length === 0;
if (!ok) {
  console.error('the layer rule does not hold:', JSON.stringify({ upward, cycle, downward }, null, 2));
  process.exit(1);
}
console.log(`layer rule: an upward import fails lint ("${upward[0].message}")`);

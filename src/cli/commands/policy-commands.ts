import type { Command } from 'commander';
import { resolveCellPolicy } from '../../run/run-policy.js';
import { AgentcellError } from '../../errors.js';
import { agentcellPaths } from '../../paths.js';
import { explainPolicy } from '../../policy/explain-policy.js';
import { policyJsonSchema } from '../../policy/policy-json-schema.js';
import type { ResolvedPolicy } from '../../policy/resolve-policy.js';
import { addCellOptions, toCellOptions, type CellFlags } from '../cell-options.js';
import { print, printJson, type JsonFlag } from '../output.js';

async function policyFor(flags: CellFlags): Promise<ResolvedPolicy> {
  return (await resolveCellPolicy(toCellOptions(flags), agentcellPaths())).resolved;
}

export function registerPolicyCommands(program: Command): void {
  const policy = program.command('policy').description('the merged policy, its errors, where a value came from');
  addCellOptions(policy.command('show').description('the effective policy and its hash'))
    .option('--json', 'machine-readable output')
    .action(async (flags: CellFlags & JsonFlag) => {
      const resolved = await policyFor(flags);
      if (flags.json) printJson({ hash: resolved.hash, files: resolved.files, policy: resolved.policy });
      else {
        print(`# policy ${resolved.hash}`);
        print(`# from: built-in${resolved.files.map((f) => `, ${f}`).join('')}`);
        printJson(resolved.policy);
      }
    });
  policy
    .command('validate')
    .description('check a policy file (default: the merged policy of the workspace)')
    .argument('[file]', 'a policy file to check on its own')
    .option('--workspace <dir>', 'workspace directory')
    .option('--json', 'machine-readable output')
    .action(async (file: string | undefined, flags: { workspace?: string } & JsonFlag) => {
      let files: string[];
      if (file !== undefined) {
        (await import('../../policy/policy-layer.js')).readPolicyFile(file);
        files = [file];
      } else {
        files = (await policyFor({ allow: [], env: [], agentArg: [], ...flags })).files;
      }
      if (flags.json) printJson({ valid: true, files });
      else print(`valid: ${files.length ? files.join(', ') : 'built-in defaults only'}`);
    });
  policy
    .command('schema')
    .description('print the JSON Schema of agentcell.toml (for editors; init points at the shipped copy)')
    .action(() => printJson(policyJsonSchema()));
  addCellOptions(policy.command('explain').description('where each effective value came from').argument('[key]'))
    .option('--json', 'machine-readable output')
    .action(async (key: string | undefined, flags: CellFlags & JsonFlag) => {
      const rows = explainPolicy(await policyFor(flags), key);
      if (key !== undefined && rows.length === 0)
        throw new AgentcellError('USAGE', `no policy key "${key}" (try: agentcell policy explain)`);
      if (flags.json) printJson(rows);
      else for (const r of rows) print(`${r.key} = ${JSON.stringify(r.value)}    # ${r.from.join(' + ')}`);
    });
}

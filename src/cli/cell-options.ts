import { Option, type Command } from 'commander';
import { BACKENDS, MODES, NETWORK_MODES, WORKSPACE_MODES } from '../_internal/vocabulary.js';
import { AgentcellError } from '../errors.js';
import type { CellOptions } from '../run/prepare-run.js';

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** The options every cell command shares, defined once. */
export function addCellOptions(command: Command): Command {
  return command
    .option('--cell <name>', 'cell to use (default: named after the workspace)')
    .option('--workspace <dir>', 'workspace directory (default: the current directory)')
    .option('--policy <file>', 'policy file instead of the workspace agentcell.toml')
    .addOption(new Option('--backend <name>', 'sandbox backend').choices([...BACKENDS]))
    .option('--image <ref>', 'OCI image for podman, docker and gvisor cells')
    .addOption(new Option('--mode <mode>', 'assurance mode').choices([...MODES]))
    .addOption(new Option('--workspace-mode <mode>', 'how the workspace is exposed').choices([...WORKSPACE_MODES]))
    .addOption(new Option('--network <mode>', 'network access').choices([...NETWORK_MODES]))
    .option('--allow <host[:port]>', 'allow a host (repeatable)', collect, [])
    .option('--env <name[=value]>', 'set a variable, or pass one from this environment (repeatable)', collect, [])
    .option('--timeout <duration>', 'stop the command after this long (e.g. 90s, 30m)')
    .option('--root', 'run as root inside the cell (never root on the host)')
    .option('--ack-breakglass <date>', 'acknowledge breakglass mode for today (YYYY-MM-DD)')
    .option('--agent <name>', 'run an agent through its adapter; the command is its arguments')
    .option('--agent-arg <arg>', 'an extra argument for the agent (repeatable)', collect, [])
    .option(
      '--branch <name>',
      'a branch cell: work on a checkout of --from owned by the cell; accept lands branch NAME',
    )
    .option('--from <ref>', 'with --branch: the ref to check out (default: the branch if it exists, else HEAD)');
}

export interface CellFlags {
  cell?: string;
  workspace?: string;
  policy?: string;
  backend?: string;
  image?: string;
  mode?: string;
  workspaceMode?: string;
  network?: string;
  allow: string[];
  env: string[];
  timeout?: string;
  root?: boolean;
  ackBreakglass?: string;
  agent?: string;
  agentArg: string[];
  branch?: string;
  from?: string;
}

export function toCellOptions(flags: CellFlags): CellOptions {
  // --branch and --from pick the workspace (the branch cell's checkout): the caller opens the cell first.
  const { policy, agentArg, branch, from, ...rest } = flags;
  if (from !== undefined && branch === undefined) throw new AgentcellError('USAGE', '--from needs --branch NAME');
  const options: CellOptions = { ...rest, agentArgs: agentArg };
  if (policy !== undefined) options.policyFile = policy;
  return options;
}

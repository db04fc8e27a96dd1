import type { CommandInfo, OptionInfo } from './command-tree.js';
import { EXAMPLE_WORKFLOW } from './example-workflow.js';

/**
 * `agentcell.1`, rendered from the commander definitions (the same tree the completions
 * use), so the man page can't drift from the CLI. Plain man(7) macros.
 */
export function manPage(tree: CommandInfo, version: string, date: string): string {
  const lines = [
    `.TH AGENTCELL 1 "${date}" "agentcell ${version}" "User Commands"`,
    '.SH NAME',
    `agentcell \\- ${roff(tree.description)}`,
    '.SH SYNOPSIS',
    '.B agentcell',
    '.I command',
    '[\\fIoptions\\fR] [\\fB\\-\\-\\fR \\fIcommand\\fR ...]',
    '.SH DESCRIPTION',
    'agentcell runs AI coding agents, or any command, inside a cell: a bounded local runtime where',
    "the agent can do anything while the host's home directory, credentials, sockets and network stay",
    'out of reach. Every run is a transaction: checkpoint, governed run, signed receipt, then accept,',
    'restore or fork.',
    '.SH EXAMPLE',
    '.nf',
    ...EXAMPLE_WORKFLOW.trimEnd()
      .split('\n')
      .map((l) => roff(l)),
    '.fi',
    '.SH COMMANDS',
    ...tree.commands.flatMap((c) => commandSection(c, [])),
    '.SH GLOBAL OPTIONS',
    ...tree.options.flatMap(optionItem),
    '.SH EXIT STATUS',
    "\\fBrun\\fR and the agent commands exit with the command's own code (128+N when signal N ended it,",
    '124 when it passed its timeout, 153 when it passed its disk limit).',
    "agentcell's own failures exit 2 (usage, policy) or 3 (host or backend not ready); with",
    '\\fB\\-\\-json\\fR they print {"error": {"code", "message"}}.',
    '.SH ENVIRONMENT',
    '.TP',
    '.B AGENTCELL_HOME',
    'Keep state and config under this directory instead of the XDG ones.',
    '.TP',
    '.B XDG_STATE_HOME, XDG_CONFIG_HOME',
    'State (cells, layers, receipts) under $XDG_STATE_HOME/agentcell, config under $XDG_CONFIG_HOME/agentcell.',
    '.SH FILES',
    '.TP',
    '.I agentcell.toml',
    'The project policy in the workspace (see \\fBagentcell policy explain\\fR).',
    '.SH SEE ALSO',
    '.BR bwrap (1),',
    '.BR podman (1),',
    '.BR docker (1)',
    '',
  ];
  return lines.join('\n');
}

function commandSection(command: CommandInfo, parents: readonly string[]): string[] {
  const path = [...parents, command.name];
  const args = command.arguments.map((a) => {
    const name = `${a.name}${a.variadic ? '...' : ''}`;
    return a.required ? `\\fI${name}\\fR` : `[\\fI${name}\\fR]`;
  });
  const own = [
    '.SS',
    `\\fB${roff(path.join(' '))}\\fR ${args.join(' ')}`.trimEnd(),
    ...(command.aliases.length > 0 ? [`(alias: ${command.aliases.map(roff).join(', ')})`, '.br'] : []),
    roff(command.description || ''),
    ...command.options.filter((o) => o.long !== '--help').flatMap(optionItem),
  ];
  // A group (`cell`, `image`, …) is only its subcommands; its own line says what it groups.
  return [...own, ...command.commands.flatMap((c) => commandSection(c, path))];
}

function optionItem(option: OptionInfo): string[] {
  const choices = option.choices.length > 0 ? ` (one of: ${option.choices.join(', ')})` : '';
  return ['.TP', `.B ${roff(option.flags)}`, `${roff(option.description)}${roff(choices)}`];
}

/** Text made safe for roff: backslashes, hyphens of options, and lines starting with a control character. */
function roff(text: string): string {
  const escaped = text.replaceAll('\\', '\\e').replaceAll('-', '\\-');
  return /^[.']/.test(escaped) ? `\\&${escaped}` : escaped;
}

import { isHiddenCommand, type CommandInfo, type OptionInfo } from './command-tree.js';

/** Values only agentcell's state knows: each shell's script asks `agentcell __complete` for them. */
export interface CompletionSources {
  cells(): string[];
  /** Checkpoint names and ids of a cell (undefined: the workspace's default cell). */
  checkpoints(cell: string | undefined): string[];
  agents(): string[];
}

/** What the shell should offer: these words, or its own file-name completion. */
export interface Completion {
  readonly words: readonly string[];
  readonly files: boolean;
}

const FILE_VALUES = new Set(['--workspace', '--policy', '--from', '--rootfs', '--output', '--key', '--file']);
const CELL_VALUES = new Set(['--cell']);
const CHECKPOINT_VALUES = new Set(['--to']);
const AGENT_VALUES = new Set(['--agent']);
const CELL_ARGUMENTS = new Set(['name', 'cell', 'cells']);
const AGENT_ARGUMENTS = new Set(['agent']);

/**
 * Completes the last of `words` (the command line after `agentcell`, the word being
 * typed last, possibly empty) against the command tree. One engine for every shell:
 * the shells' scripts only pass the words in and the answer out.
 */
export function complete(tree: CommandInfo, words: readonly string[], sources: CompletionSources): Completion {
  const current = words.at(-1) ?? '';
  const before = words.slice(0, -1);
  let command = tree;
  let positional = 0;
  let cell: string | undefined;
  for (let i = 0; i < before.length; i++) {
    const word = before[i] ?? '';
    if (word === '--') return { words: [], files: true }; // the cell's own command line
    if (word.startsWith('-')) {
      const option = findOption(command, word);
      if (option?.takesValue && !word.includes('=')) {
        const value = before[i + 1];
        if (option.long === '--cell' && value !== undefined) cell = value;
        i++;
      } else if (option?.long === '--cell' && word.includes('=')) cell = word.slice(word.indexOf('=') + 1);
      continue;
    }
    const sub = positional === 0 ? findCommand(command, word) : undefined;
    if (sub) command = sub;
    else positional++;
  }
  const previous = before.at(-1);
  const pending = previous?.startsWith('-') && !previous.includes('=') ? findOption(command, previous) : undefined;
  if (pending?.takesValue) return optionValues(pending, current, sources, cell);
  if (current.startsWith('-')) return matching(current, command.options.flatMap(optionNames));
  if (positional === 0 && command.commands.length > 0)
    return matching(
      current,
      command.commands.flatMap((c) => [c.name, ...c.aliases]).filter((n) => !isHiddenCommand(n)),
    );
  const argument = command.arguments[Math.min(positional, command.arguments.length - 1)];
  if (argument && CELL_ARGUMENTS.has(argument.name)) return matching(current, sources.cells());
  if (argument && AGENT_ARGUMENTS.has(argument.name)) return matching(current, sources.agents());
  return { words: [], files: argument !== undefined };
}

function optionValues(
  option: OptionInfo,
  current: string,
  sources: CompletionSources,
  cell: string | undefined,
): Completion {
  const long = option.long ?? '';
  if (option.choices.length > 0) return matching(current, option.choices);
  if (CELL_VALUES.has(long)) return matching(current, sources.cells());
  if (CHECKPOINT_VALUES.has(long)) return matching(current, sources.checkpoints(cell));
  if (AGENT_VALUES.has(long)) return matching(current, sources.agents());
  return { words: [], files: FILE_VALUES.has(long) };
}

function matching(prefix: string, candidates: readonly string[]): Completion {
  return { words: [...new Set(candidates.filter((c) => c.startsWith(prefix)))].sort(), files: false };
}

function optionNames(option: OptionInfo): string[] {
  return [option.long, option.short].filter((n): n is string => n !== undefined);
}

function findOption(command: CommandInfo, word: string): OptionInfo | undefined {
  const name = word.includes('=') ? word.slice(0, word.indexOf('=')) : word;
  return command.options.find((o) => o.long === name || o.short === name);
}

function findCommand(command: CommandInfo, word: string): CommandInfo | undefined {
  return command.commands.find((c) => c.name === word || c.aliases.includes(word));
}

import type { Command, Option } from 'commander';

/** One option as the completions and the man page need it. */
export interface OptionInfo {
  readonly flags: string;
  readonly long?: string;
  readonly short?: string;
  readonly description: string;
  /** The option takes a value (`--cell <name>`). */
  readonly takesValue: boolean;
  readonly choices: readonly string[];
}

export interface ArgumentInfo {
  readonly name: string;
  readonly required: boolean;
  readonly variadic: boolean;
  readonly description: string;
}

/** A commander command as plain data: completions and the man page are rendered from this, never by hand. */
export interface CommandInfo {
  readonly name: string;
  readonly aliases: readonly string[];
  readonly description: string;
  readonly usage: string;
  readonly options: readonly OptionInfo[];
  readonly arguments: readonly ArgumentInfo[];
  readonly commands: readonly CommandInfo[];
}

/** Hidden commands (the shells' completion entry point) start with `__`. */
export const isHiddenCommand = (name: string): boolean => name.startsWith('__');

export function describeCommand(command: Command): CommandInfo {
  return {
    name: command.name(),
    aliases: command.aliases(),
    description: command.description(),
    usage: command.usage(),
    options: [...command.options.map(optionInfo), helpOption()],
    arguments: command.registeredArguments.map((a) => ({
      name: a.name(),
      required: a.required,
      variadic: a.variadic,
      description: a.description,
    })),
    commands: command.commands.filter((c) => !isHiddenCommand(c.name())).map(describeCommand),
  };
}

function optionInfo(option: Option): OptionInfo {
  return {
    flags: option.flags,
    ...(option.long ? { long: option.long } : {}),
    ...(option.short ? { short: option.short } : {}),
    description: option.description,
    takesValue: option.required || option.optional,
    choices: option.argChoices ?? [],
  };
}

function helpOption(): OptionInfo {
  return {
    flags: '-h, --help',
    long: '--help',
    short: '-h',
    description: 'display help',
    takesValue: false,
    choices: [],
  };
}

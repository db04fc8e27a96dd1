import { Argument, type Command } from 'commander';
import { realpathSync } from 'node:fs';
import { AGENT_NAMES } from '../../agents/agent-adapter.js';
import { cellNames, checkpointRefs } from '../../cell/completion-sources.js';
import { agentcellPaths } from '../../paths.js';
import { AGENTCELL_VERSION } from '../../version.js';
import { describeCommand } from '../command-tree.js';
import { complete } from '../completion.js';
import { COMPLETION_SHELLS, FILES_DIRECTIVE, completionScript, type CompletionShell } from '../completion-scripts.js';
import { manPage } from '../man-page.js';
import { print } from '../output.js';

/** `completion SHELL`, the shells' `__complete` entry point, and `man`. */
export function registerShellCommands(program: Command): void {
  program
    .command('completion')
    .description('print a completion script for bash, zsh or fish (commands, options, cells, checkpoints, agents)')
    .addArgument(new Argument('<shell>', 'the shell').choices([...COMPLETION_SHELLS]))
    .action((shell: CompletionShell) => print(completionScript(shell, launcherPath()).trimEnd()));

  // Hidden: what the completion scripts call with the words typed so far.
  program
    .command('__complete', { hidden: true })
    .argument('[words...]')
    .action((words: string[]) => {
      const paths = agentcellPaths();
      const safe = <T>(read: () => T[]): T[] => {
        try {
          return read();
        } catch {
          return []; // a completion never fails loudly: a broken cell just offers nothing
        }
      };
      const answer = complete(describeCommand(program), words.length > 0 ? words : [''], {
        cells: () => safe(() => cellNames(paths)),
        checkpoints: (cell) => safe(() => checkpointRefs(paths, cell, process.cwd())),
        agents: () => [...AGENT_NAMES],
      });
      for (const word of answer.words) print(word);
      if (answer.files) print(FILES_DIRECTIVE);
    });

  program
    .command('man')
    .description('print the agentcell(1) man page (roff): agentcell man | man -l -')
    .action(() => print(manPage(describeCommand(program), AGENTCELL_VERSION, new Date().toISOString().slice(0, 10))));
}

/** The executable the completion scripts call back: this very install (the launcher beside the bundle). */
function launcherPath(): string {
  const script = process.argv[1];
  if (!script) return 'agentcell';
  try {
    return realpathSync(script);
  } catch {
    return script;
  }
}

import { spawnSync } from 'node:child_process';
import { AgentcellError } from '../errors.js';
import { findExecutable } from '../_internal/find-executable.js';

/**
 * How a session gets a real terminal without a compiled addon: a helper that opens a
 * pty, runs the supervisor on its slave side (a new session whose controlling terminal
 * it is) and relays the master to its own stdin and stdout. Strategies in order;
 * the first present wins.
 */
export interface PtyHelper {
  name: 'script' | 'python3';
  /** The helper's argv that runs `command` on a new pty. */
  argv(command: readonly string[]): string[];
}

/** util-linux `script`: -q no banner, -f flush at once, -e its exit code is the command's, no typescript file. */
function utilLinuxScript(path: string): PtyHelper {
  return { name: 'script', argv: (command) => [path, '-qfec', command.map(shellQuote).join(' '), '/dev/null'] };
}

/** Python's pty module: the same relay (stdin to the master, the master to stdout), the command's exit code. */
const PYTHON_RELAY = `
import os, pty, select, sys
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
inputs = [0, fd]
while fd in inputs:
    for r in select.select(inputs, [], [])[0]:
        try:
            data = os.read(r, 65536)
        except OSError:
            data = b''
        if r == 0:
            if data: os.write(fd, data)
            else: inputs.remove(0)
        elif data:
            os.write(1, data)
        else:
            inputs.remove(fd)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status) & 255)
`;

function pythonPty(path: string): PtyHelper {
  return { name: 'python3', argv: (command) => [path, '-c', PYTHON_RELAY, ...command] };
}

export function findPtyHelper(env: NodeJS.ProcessEnv = process.env, prefer?: PtyHelper['name']): PtyHelper {
  const strategies: [PtyHelper['name'], () => PtyHelper | undefined][] = [
    [
      'script',
      () => {
        const path = findExecutable('script', env);
        if (!path) return undefined;
        // BSD script (macOS) takes other flags: only util-linux's is used.
        const version = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 3000 });
        return version.stdout?.includes('util-linux') ? utilLinuxScript(path) : undefined;
      },
    ],
    [
      'python3',
      () => {
        const path = findExecutable('python3', env);
        return path ? pythonPty(path) : undefined;
      },
    ],
  ];
  for (const [name, strategy] of strategies) {
    if (prefer !== undefined && name !== prefer) continue;
    const helper = strategy();
    if (helper) return helper;
  }
  throw new AgentcellError(
    'PTY_UNAVAILABLE',
    'a session needs a terminal helper: util-linux script (sudo apt-get install bsdutils util-linux) or python3',
  );
}

function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_./=:@%+-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

import { spawn, spawnSync } from 'node:child_process';
import { closeSync, constants, openSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentcellError, type ErrorCode } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { isProcessAlive, processStartTime } from '../_internal/process-identity.js';
import { makeDirs } from '../_internal/make-dirs.js';
import type { CellOptions } from '../run/prepare-run.js';
import { locateCell, openCell } from '../cell/cell-store.js';
import { controlSocketPath } from './control-socket.js';
import { findPtyHelper, type PtyHelper } from './session-pty.js';
import {
  newSessionId,
  readSession,
  sessionDir,
  updateSession,
  writeSession,
  type SessionRecord,
} from './session-record.js';
import { SESSION_REQUEST_ENV, type SessionRequest } from './session-supervisor.js';

/**
 * Node flags for a supervisor, which idles for the session's life with the gateway in it.
 * Measured on idle `--agent claude` sessions (private = Pss_Anon of one supervisor):
 * - a 1 MiB young generation instead of up to 16 MiB (the gateway's buffers are external
 *   memory, not young objects), and `gc` exposed for the one full collection it runs once
 *   its cell has started (superviseSession). Together about a third of its resident memory.
 * - `--no-opt --no-sparkplug`: no optimized or baseline machine code: 22 → 17.6 MiB private,
 *   65 → 56 MiB RSS (less of node's text touched); in 20 sessions 24.2 → 19.0 MiB PSS each.
 *   Its costs: `session start` ~40 ms more (min of 5: 327 → 394 ms; the run's start-up code
 *   is no longer optimized); a CONNECT download through the gateway 800 → 770 MiB/s and 460 →
 *   540 ms CPU per GiB; TLS inspection no slower (an inspected HTTPS request 6.6 vs 6.2 ms
 *   median, a new leaf 7.5 vs 6.7 ms): its time is OpenSSL's. The bundle's code cache is no
 *   loss: V8 already rejects it here (the semi-space flag changes its flag hash).
 * Tried and left out: `--lite-mode` and `--jitless` save no more (17.2–17.8 MiB), start
 * slower still, and turn WebAssembly off with a warning on the session's terminal;
 * `--single-threaded`, `--v8-pool-size=1`, MALLOC_ARENA_MAX=2 and `--optimize-for-size` were
 * within noise (±0.5 MiB); `--max-old-space-size` changes nothing while idle.
 */
export const SUPERVISOR_NODE_FLAGS = ['--max-semi-space-size=1', '--expose-gc', '--no-opt', '--no-sparkplug'] as const;

/**
 * The supervisor's environment on top of the host's (a user's own setting wins): glibc's
 * malloc with a fixed mmap threshold (its default, 128 KiB). Left dynamic, the first large
 * block freed at start-up (a read of the bundle, its code cache) raises the threshold to
 * that block's size, and every later block below it is carved from the heap, which then
 * never shrinks: measured on an idle session, Pss_Anon 16.3 → 12.4 MiB per supervisor.
 * Setting the trim threshold instead does the same (either turns the dynamic threshold
 * off); other C libraries ignore the variable.
 */
export const SUPERVISOR_ENV = { MALLOC_MMAP_THRESHOLD_: '131072' } as const;

export interface SessionStartRequest {
  /** What `run` would take: cell, workspace, policy, backend, agent… */
  options: CellOptions;
  /** The command, or the agent's arguments. */
  argv: string[];
  paths: AgentcellPaths;
  /** How to start a supervisor: an argv that runs `superviseSession` on the dir appended to it (the CLI's `session supervise`). */
  supervisor: string[];
  cwd?: string;
  hostEnv?: NodeJS.ProcessEnv;
  /** The session terminal's first size (default 24 x 80). */
  rows?: number;
  cols?: number;
  /** Which pty helper to use (default: the first present, util-linux script then python3). */
  pty?: PtyHelper['name'];
}

/**
 * Starts a detached session: a supervisor on a new pty, in the background, running the
 * run the options describe. Returns once the cell has started (or the run failed, which
 * is thrown as the run's own error); the session goes on after this process exits.
 */
export async function startSession(request: SessionStartRequest): Promise<SessionRecord> {
  const cwd = request.cwd ?? process.cwd();
  const hostEnv = request.hostEnv ?? process.env;
  const helper = findPtyHelper(hostEnv, request.pty);
  const { options, argv } = request;
  const { cell, workspace } = locateCell(request.paths, options, cwd);
  openCell(request.paths, cell, workspace);
  const id = newSessionId();
  const dir = sessionDir(request.paths, cell, id);
  makeDirs(dir, 0o700);
  const fifos = ['out.fifo', 'in.fifo'].map((name) => join(dir, name));
  const made = spawnSync('mkfifo', ['-m', '600', ...fifos], { encoding: 'utf8' });
  if (made.status !== 0)
    throw new AgentcellError(
      'PTY_UNAVAILABLE',
      `mkfifo (coreutils) failed in ${dir}: ${made.stderr || String(made.error)}`,
    );
  let record: SessionRecord = {
    version: 1,
    id,
    cell,
    workspace,
    agent: options.agent ?? null,
    command: argv,
    createdAt: new Date().toISOString(),
    state: 'starting',
    supervisor: null,
    pty: null,
    socket: controlSocketPath(dir),
    run: null,
    startedAt: null,
    endedAt: null,
    exitCode: null,
    receipt: null,
  };
  writeSession(dir, record);
  const sessionRequest: SessionRequest = {
    options: { ...options },
    argv,
    cwd,
    rows: request.rows ?? 24,
    cols: request.cols ?? 80,
  };

  // The helper's stdout is the write end of out.fifo; this process holds a read end until the
  // supervisor has its own, so the helper never writes to a FIFO nobody reads (and once the
  // supervisor is gone, its writes fail and it exits: nothing is left behind).
  const [outPath, inPath] = fifos as [string, string];
  const outRead = openSync(outPath, constants.O_RDONLY | constants.O_NONBLOCK);
  const outWrite = openSync(outPath, constants.O_WRONLY);
  const inEnd = openSync(inPath, constants.O_RDWR);
  const errors = openSync(join(dir, 'supervisor.log'), 'a', 0o600);
  let exited = false;
  try {
    const [command, ...args] = helper.argv([...request.supervisor, dir]);
    if (command === undefined) throw new Error('empty pty helper argv');
    const child = spawn(command, args, {
      cwd,
      env: { ...SUPERVISOR_ENV, ...hostEnv, [SESSION_REQUEST_ENV]: JSON.stringify(sessionRequest) },
      stdio: [inEnd, outWrite, errors],
      detached: true,
    });
    child.on('error', () => (exited = true));
    child.on('exit', () => (exited = true));
    child.unref();
    if (child.pid !== undefined)
      record = updateSession(dir, {
        pty: { pid: child.pid, startTime: processStartTime(child.pid), host: hostname() },
      });
  } finally {
    for (const fd of [outWrite, inEnd, errors]) closeSync(fd);
  }
  try {
    for (;;) {
      record = readSession(dir);
      if (record.state !== 'starting') break;
      const supervisorGone = record.supervisor !== null && !isProcessAlive(record.supervisor);
      if (exited || supervisorGone) {
        record = updateSession(dir, {
          state: 'failed',
          endedAt: new Date().toISOString(),
          error: {
            code: 'INTERNAL',
            message: `the session's supervisor ended before its cell started: ${logTail(dir)}`,
          },
        });
        break;
      }
      await sleep(25);
    }
  } finally {
    closeSync(outRead);
  }
  if (record.state === 'failed' && record.error) {
    const code = record.error.code as ErrorCode;
    throw new AgentcellError(code, `session ${id}: ${record.error.message}`);
  }
  return record;
}

function logTail(dir: string): string {
  try {
    return readFileSync(join(dir, 'supervisor.log'), 'utf8').trim().split('\n').slice(-5).join(' | ') || 'no log';
  } catch {
    return 'no log';
  }
}

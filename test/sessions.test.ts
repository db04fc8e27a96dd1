import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultCellName } from '../src/cell/cell-name.js';
import { backendArgs, prepareBackend, TEST_BACKENDS, type TestBackend } from './backends-under-test.js';
import { makeCerts } from './make-certs.js';
import { acJson, agentSandbox, CLI, listen, makeSandbox, waitFor, type Sandbox } from './helpers.js';
import { anthropicStub, type StubRequest } from './provider-stubs.js';

/**
 * Detached sessions, driven the way a user drives them: a real terminal (tmux), the real
 * Claude Code CLI in a real cell, the Anthropic stub on loopback behind the gateway. On
 * bwrap and on podman (the OCI backend the sessions suite covers), as listed in
 * AGENTCELL_TEST_BACKENDS.
 */
const BACKENDS = TEST_BACKENDS.filter((b): b is TestBackend => b === 'bwrap' || b === 'podman');
const ANTHROPIC_KEY = 'sk-ant-session-e2e-9f8e7d6c5b4a39281706';

interface SessionJson {
  id: string;
  cell: string;
  state: string;
  run: string | null;
  receipt: string | null;
  exitCode: number | null;
  supervisor: { pid: number } | null;
  pty: { pid: number } | null;
  socket: string;
  transcript?: { sha256: string; bytes: number };
}

/** A tmux server of the test's own (its socket name), whose shells get `env`. */
class Terminal {
  private readonly socket = `agentcell-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  private readonly env: NodeJS.ProcessEnv;
  constructor(env: NodeJS.ProcessEnv, cwd: string) {
    // No history file: a shell writing it as the server dies would race the sandbox's removal.
    this.env = { ...env, HISTFILE: '/dev/null' };
    this.tmux(
      '-f',
      '/dev/null',
      'new-session',
      '-d',
      '-s',
      'main',
      '-x',
      '150',
      '-y',
      '45',
      '-c',
      cwd,
      'bash --norc --noprofile',
    );
  }
  tmux(...args: string[]): string {
    const r = spawnSync('tmux', ['-L', this.socket, ...args], { env: this.env, encoding: 'utf8', timeout: 10_000 });
    assert.equal(r.status, 0, `tmux ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }
  type(target: string, text: string): void {
    this.tmux('send-keys', '-t', target, '-l', text);
  }
  key(target: string, ...keys: string[]): void {
    this.tmux('send-keys', '-t', target, ...keys);
  }
  screen(target: string): string {
    return this.tmux('capture-pane', '-p', '-J', '-S', '-200', '-t', target);
  }
  async waitFor(target: string, pattern: RegExp, timeoutMs = 90_000): Promise<RegExpExecArray> {
    let match: RegExpExecArray | null = null;
    try {
      await waitFor(
        `${String(pattern)} on the terminal`,
        () => (match = pattern.exec(this.screen(target))) !== null,
        timeoutMs,
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}; the screen:\n${this.screen(target)}`);
    }
    return match as unknown as RegExpExecArray;
  }
  kill(): void {
    spawnSync('tmux', ['-L', this.socket, 'kill-server'], { env: this.env });
  }
}

function cli(...args: string[]): string {
  return `${process.execPath} ${CLI} ${args.map((a) => `'${a}'`).join(' ')}`;
}

function rawLogs(sb: Sandbox, id: string): Buffer {
  const r = spawnSync(process.execPath, [CLI, 'session', 'logs', id, '--raw'], { cwd: sb.workspace, env: sb.env });
  assert.equal(r.status, 0, r.stderr.toString());
  return r.stdout;
}

/** Processes whose command line mentions `marker` (the session's id is in its supervisor's). */
function processesWith(marker: string): string[] {
  const r = spawnSync('pgrep', ['-a', '-f', marker], { encoding: 'utf8' });
  return r.stdout.split('\n').filter((l) => l.trim() !== '' && !l.includes('pgrep'));
}

function mountsUnder(root: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((target) => target.startsWith(root));
}

/** The session's podman container: named `agentcell-HOST-PID` after the supervisor, which runs the engine CLI. */
function containersOf(supervisorPid: number, sb: Sandbox): string[] {
  const r = spawnSync('podman', ['ps', '-a', '--format', '{{.Names}}'], { env: sb.env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter((n) => n.startsWith('agentcell-') && n.endsWith(`-${supervisorPid}`));
}

async function nothingLeft(sb: Sandbox, backend: TestBackend, session: SessionJson, marker: string): Promise<void> {
  await waitFor(`no process of session ${session.id}`, () => processesWith(session.id).length === 0, 20_000).catch(() =>
    assert.deepEqual(processesWith(session.id), [], 'no process of the session (supervisor, pty helper) runs'),
  );
  // An OCI cell is removed by the run's watchdog (src/backends/run-watchdog.ts), a moment after the supervisor's death.
  await waitFor('nothing of the cell', () => processesWith(marker).length === 0, 20_000).catch(() =>
    assert.deepEqual(processesWith(marker), [], 'nothing of the cell runs'),
  );
  if (backend === 'podman' && session.supervisor) {
    const pid = session.supervisor.pid;
    await waitFor('the container removed', () => containersOf(pid, sb).length === 0, 30_000).catch(() =>
      assert.deepEqual(containersOf(pid, sb), [], 'the container is removed'),
    );
  }
}

/** `session start -- sh -c SCRIPT`, once the session's terminal has printed `printed`. */
async function startShellSession(
  sb: Sandbox,
  backend: TestBackend,
  script: string,
  printed: string,
): Promise<SessionJson> {
  const started = acJson<SessionJson>(
    sb,
    'session',
    'start',
    ...backendArgs(backend),
    '--json',
    '--',
    'sh',
    '-c',
    script,
  );
  assert.equal(started.state, 'running');
  await waitFor(`the session printing ${printed}`, () => rawLogs(sb, started.id).includes(printed), 30_000);
  return started;
}

for (const backend of BACKENDS) {
  describe(`sessions on ${backend}`, () => {
    let certDir: string;
    let server: Server;
    let port: number;
    let ca: string;
    const seen: StubRequest[] = [];
    let handler: (req: IncomingMessage, res: ServerResponse) => void = () => undefined;

    before(async () => {
      prepareBackend(backend);
      certDir = mkdtempSync(join(tmpdir(), 'agentcell-sessions-'));
      const certs = await makeCerts(certDir, 'stub provider', ['api.anthropic.com']);
      ca = certs.ca;
      server = createServer({ key: certs.key, cert: certs.cert }, (req, res) => handler(req, res));
      port = await listen(server);
    });
    after(() => {
      server.close();
      rmSync(certDir, { recursive: true, force: true });
    });

    function claudeSandbox(): Sandbox {
      const sb = agentSandbox({ 'README.md': '# a repo\n' });
      sb.env['ANTHROPIC_API_KEY'] = ANTHROPIC_KEY;
      sb.env['TERM'] = 'xterm-256color';
      writeFileSync(
        join(sb.workspace, 'agentcell.toml'),
        [
          '[network]',
          'resolve = { "api.anthropic.com" = "127.0.0.1" }',
          `upstream_ca = [${JSON.stringify(ca)}]`,
          '[env]',
          `ANTHROPIC_BASE_URL = "https://api.anthropic.com:${port}"`,
          '',
        ].join('\n'),
      );
      seen.length = 0;
      handler = anthropicStub(seen, {
        file: join(sb.workspace, 'hello.txt'),
        content: 'written in a session\n',
        envDump: join(sb.workspace, 'cell-env.txt'),
      });
      return sb;
    }

    it('start, attach, type, detach, send, logs --follow and stop, through a terminal, with Claude Code', async () => {
      const sb = claudeSandbox();
      const term = new Terminal(sb.env, sb.workspace);
      let session: SessionJson | undefined;
      try {
        term.type(
          'main',
          cli('session', 'start', ...backendArgs(backend), '--agent', 'claude', '--', '--model', 'claude-stub-1'),
        );
        term.key('main', 'Enter');
        // From the note on stderr, inside its sentence: where the printed id lands depends on how the
        // typed command wraps in the pane (the checkout's path length), and tmux's capture-pane -J
        // may join it onto the command's line or the shell's redraw may write over part of it.
        const id = (await term.waitFor('main', /session (s-[0-9a-z]{17}) running in cell/, 600_000))[1] ?? '';
        session = acJson<SessionJson>(sb, 'session', 'show', id, '--json');
        assert.equal(session.state, 'running');
        // Its supervisor keeps glibc's mmap threshold fixed (SUPERVISOR_ENV: a quarter less private memory).
        const environ = readFileSync(`/proc/${session.supervisor?.pid ?? 0}/environ`, 'utf8').split('\0');
        assert.ok(environ.includes('MALLOC_MMAP_THRESHOLD_=131072'), 'the supervisor runs with the fixed threshold');

        term.type('main', cli('session', 'attach', id));
        term.key('main', 'Enter');
        await term.waitFor('main', /bypass permissions/);
        term.type('main', 'create hello.txt');
        await sleep(300);
        term.key('main', 'Enter');
        await term.waitFor('main', /Wrote the file\./);
        assert.ok(
          seen.some((r) => JSON.stringify(r.body ?? {}).includes('create hello.txt')),
          'what was typed reached the provider',
        );

        term.key('main', 'C-]');
        term.key('main', 'd');
        await term.waitFor('main', new RegExp(`detached from ${id}`));
        assert.equal(acJson<SessionJson>(sb, 'session', 'show', id, '--json').state, 'running', 'detached, it goes on');

        term.tmux('new-window', '-t', 'main', '-c', sb.workspace, 'bash --norc --noprofile');
        term.type('main:1', `${cli('session', 'logs', id, '--follow')}; echo FOLLOW-ENDED`);
        term.key('main:1', 'Enter');
        await term.waitFor('main:1', /Wrote the file\./);

        const before = seen.length;
        term.type('main:0', cli('session', 'send', id, '--message', 'once more please'));
        term.key('main:0', 'Enter');
        await waitFor('the sent message at the provider', () =>
          seen.slice(before).some((r) => JSON.stringify(r.body ?? {}).includes('once more please')),
        );
        await term.waitFor('main:1', /once more please/);

        term.type('main:0', cli('session', 'stop', id, '--grace', '5'));
        term.key('main:0', 'Enter');
        await term.waitFor('main:0', new RegExp(`${id} exited, exit \\d+, receipt (r-[0-9a-z]{17})`));
        await term.waitFor('main:1', /^FOLLOW-ENDED$/m);

        const done = acJson<SessionJson>(sb, 'session', 'show', id, '--json');
        assert.equal(done.state, 'exited');
        const receipt = acJson<{ id: string; status: string; transcript?: { sha256: string; bytes: number } }>(
          sb,
          'receipt',
          'show',
          done.receipt ?? '',
          '--format',
          'json',
        );
        assert.equal(receipt.status, 'completed');
        const raw = rawLogs(sb, id);
        assert.deepEqual(
          receipt.transcript,
          {
            sha256: createHash('sha256').update(raw).digest('hex'),
            bytes: raw.length,
          },
          'the receipt signs the stored transcript',
        );
        assert.ok(!raw.includes(ANTHROPIC_KEY), 'the key is not in the transcript');

        const diff = acJson<{ path: string; change: string }[]>(sb, 'diff', '--json');
        assert.ok(
          diff.some((c) => c.path === 'hello.txt' && c.change === 'added'),
          JSON.stringify(diff),
        );

        const timeline = acJson<{ kind: string; toolCalls?: string[]; phase?: string }[]>(
          sb,
          'session',
          'timeline',
          id,
          '--json',
        );
        assert.ok(
          timeline.some((e) => e.kind === 'llm' && e.toolCalls?.includes('Write')),
          'the Write turn is on the timeline',
        );
        assert.ok(timeline.some((e) => e.kind === 'run' && e.phase === 'ended'));
        assert.ok(timeline.some((e) => e.kind === 'checkpoint'));
        assert.ok(timeline.some((e) => e.kind === 'egress'));
        const list = acJson<(SessionJson & { pendingChanges: number })[]>(sb, 'session', 'list', '--json');
        assert.equal(list.find((s) => s.id === id)?.pendingChanges, diff.length);

        await nothingLeft(sb, backend, done, '--model claude-stub-1');
      } finally {
        term.kill();
        if (session?.supervisor) spawnSync('kill', ['-9', String(session.supervisor.pid)]);
        sb.cleanup();
      }
    });

    it('kill -9 of the supervisor: the next command shows the session lost, its run interrupted, nothing of it runs', async () => {
      const sb = makeSandbox({ 'README.md': '# a repo\n' });
      const marker = `sleep 4321.${process.pid}`;
      try {
        const started = await startShellSession(
          sb,
          backend,
          `echo session-is-up > up.txt; echo printed-before-the-kill; ${marker}`,
          'printed-before-the-kill',
        );
        assert.ok(processesWith(started.id).length > 0, 'the positive control: its supervisor is seen running');
        assert.ok(processesWith(marker).length > 0, 'the positive control: its command is seen running');

        process.kill(started.supervisor?.pid ?? 0, 'SIGKILL');
        const listed = acJson<SessionJson[]>(sb, 'session', 'list', '--json').find((s) => s.id === started.id);
        assert.equal(listed?.state, 'lost');
        assert.equal(listed?.receipt, started.run, 'its run is receipted under the run id');
        const receipt = acJson<{ status: string; exitCode: number | null }>(
          sb,
          'receipt',
          'show',
          listed?.receipt ?? '',
          '--format',
          'json',
        );
        assert.equal(receipt.status, 'interrupted');
        assert.equal(receipt.exitCode, null);
        assert.match(rawLogs(sb, started.id).toString(), /printed-before-the-kill/, 'the transcript is kept');
        await nothingLeft(sb, backend, started, marker);
        assert.equal(acJson<SessionJson>(sb, 'session', 'show', started.id, '--json').state, 'lost');
      } finally {
        // A killed run's host overlay mount (OCI) stays until the cell's next run drops it (host-overlay-mount.ts).
        for (const target of mountsUnder(sb.root)) spawnSync('umount', ['--lazy', target]);
        sb.cleanup();
      }
    });

    it('the control socket is out of the cell’s reach (a probe in the cell, the same probe on the host)', async () => {
      const sb = makeSandbox({ 'README.md': '# a repo\n' });
      const sessions = join(sb.agentcellHome, 'state', 'cells', defaultCellName(sb.workspace), 'sessions');
      const probe = `for s in ${sessions}/*/control.sock; do [ -e "$s" ] && echo "VISIBLE $s"; done; echo PROBE-DONE`;
      try {
        const started = await startShellSession(sb, backend, `${probe}; sleep 4322.${process.pid}`, 'PROBE-DONE');
        const host = spawnSync('sh', ['-c', probe], { encoding: 'utf8' });
        assert.match(
          host.stdout,
          new RegExp(`VISIBLE .*${started.id}/control\\.sock`),
          'the positive control: the host sees it',
        );
        assert.doesNotMatch(rawLogs(sb, started.id).toString(), /VISIBLE/, 'the cell does not');
        const stopped = acJson<SessionJson>(sb, 'session', 'stop', started.id, '--grace', '1', '--json');
        assert.equal(stopped.state, 'exited');
        await nothingLeft(sb, backend, stopped, `sleep 4322.${process.pid}`);
      } finally {
        sb.cleanup();
      }
    });
  });
}

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildProgram } from '../src/cli/program.js';
import { describeCommand } from '../src/cli/command-tree.js';
import { PhaseTimer } from '../src/run/phase-timer.js';
import { AGENT_NAMES } from '../src/agents/agent-adapter.js';
import { ac, makeSandbox } from './helpers.js';

const ctx = { timer: new PhaseTimer(), setExit: (): void => undefined };

describe('the command line a cell command is parsed with (only its module loaded)', () => {
  it('defines run, shell and each agent exactly as the whole program does', async () => {
    const full = describeCommand(await buildProgram(ctx));
    for (const name of ['run', 'shell', ...AGENT_NAMES]) {
      const fast = describeCommand(await buildProgram(ctx, ['node', 'agentcell', name]));
      assert.deepEqual(
        fast.commands.find((c) => c.name === name),
        full.commands.find((c) => c.name === name),
        `${name}: the fast path's command differs from the whole program's`,
      );
      assert.deepEqual(fast.options, full.options, `${name}: the program's own options differ`);
    }
    // Positive control: the whole program has the other commands the fast path leaves out.
    assert.ok(full.commands.some((c) => c.name === 'receipt'));
    assert.ok(full.commands.length > ['run', 'shell', ...AGENT_NAMES].length);
  });

  it('any other first word gets the whole program (help, unknown commands, options)', async () => {
    for (const first of ['help', 'receipt', 'nosuch', '--help', '--version']) {
      const tree = describeCommand(await buildProgram(ctx, ['node', 'agentcell', first]));
      assert.ok(
        tree.commands.some((c) => c.name === 'receipt'),
        first,
      );
    }
  });

  it('the real CLI still answers help and usage errors for run', () => {
    const sb = makeSandbox();
    try {
      const help = ac(sb, 'run', '--help');
      assert.equal(help.status, 0, help.stderr);
      assert.match(help.stdout, /--backend/);
      const bad = ac(sb, 'run', '--no-such-flag', '--', 'true');
      assert.equal(bad.status, 2, bad.stderr);
      assert.match(bad.stderr, /unknown option/);
    } finally {
      sb.cleanup();
    }
  });
});

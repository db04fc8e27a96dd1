import { unwrapCanaryPrelude } from '../src/evidence/canary-script.js';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  agentcellPaths,
  decideAfterRun,
  prepareRun,
  runPrepared,
  withCommand,
  type PreparedRun,
} from '../src/index.js';
import { makeSandbox, type Sandbox } from './helpers.js';

function prepare(sb: Sandbox, argv: string[], options: { allow?: string[]; workspaceMode?: string } = {}) {
  return prepareRun({
    argv,
    tty: false,
    paths: agentcellPaths(sb.env),
    hostEnv: sb.env,
    cwd: sb.workspace,
    ...options,
  });
}

/** Writes into a prepared run the way plain JavaScript (or a cast) could. */
function mutable(value: unknown): { push: (x: unknown) => number } & Record<string, unknown> {
  return value as { push: (x: unknown) => number } & Record<string, unknown>;
}

describe('the run pipeline', () => {
  it('a prepared run is immutable: writes throw at any depth, a new command is a new value, the caller keeps its lists', async () => {
    const sb = makeSandbox({ 'a.txt': 'a\n' });
    try {
      const allow = ['example.com'];
      const prepared = await prepare(sb, ['true'], { allow });
      assert.ok(prepared.egress, 'an allowlist run has a gateway');
      assert.throws(() => mutable(prepared.spec.argv).push('x'), TypeError);
      assert.throws(() => (mutable(prepared.spec.workspace)['mode'] = 'direct'), TypeError);
      assert.throws(() => mutable(prepared.plan.argv).push('x'), TypeError);
      assert.throws(() => mutable(prepared.egress?.rules.allow).push('evil.example'), TypeError);
      assert.throws(() => (mutable(prepared)['plan'] = undefined), TypeError);
      // Positive control: the same write to the caller's own list goes through.
      allow.push('other.example');
      assert.deepEqual(allow, ['example.com', 'other.example']);
      assert.deepEqual(prepared.resolved.policy.network.allow, ['example.com']);

      const login = withCommand(prepared, ['echo', 'replanned']);
      assert.notEqual(login, prepared);
      assert.deepEqual(unwrapCanaryPrelude(login.spec.argv), ['echo', 'replanned']);
      assert.ok(login.plan.argv.includes('replanned'), 'the backend planned the new command');
      assert.deepEqual(unwrapCanaryPrelude(prepared.spec.argv), ['true'], 'the old value is unchanged');
      assert.ok(!prepared.plan.argv.includes('replanned'));
      assert.equal(login.backend, prepared.backend);
      assert.equal(login.timer, prepared.timer, 'one timer records the whole run');
      assert.throws(() => mutable(login.spec.argv).push('x'), TypeError);
    } finally {
      sb.cleanup();
    }
  });

  it('runs the value it is given, and decideAfterRun restores a failed run and accepts a good one', async () => {
    const sb = makeSandbox({ 'a.txt': 'a\n' });
    try {
      const paths = agentcellPaths(sb.env);
      const run = async (prepared: PreparedRun) => (await runPrepared(prepared, paths)).receipt;
      const command = ['run-pipeline-test'];

      const planned = await prepare(sb, ['true']);
      const failing = withCommand(planned, ['sh', '-c', 'echo x > failed.txt; exit 3']);
      const failed = await run(failing);
      assert.deepEqual(failed.command, ['sh', '-c', 'echo x > failed.txt; exit 3']);
      assert.equal(failed.exitCode, 3);
      assert.deepEqual(await decideAfterRun(failing, paths, failed, { restoreOnFail: true, command }), {
        decision: 'restored',
        exitCode: 3,
        dropped: 1,
      });

      const good = await prepare(sb, ['sh', '-c', 'echo y > good.txt']);
      const succeeded = await run(good);
      // Not asked: nothing decided, the change waits in the cell.
      assert.deepEqual(await decideAfterRun(good, paths, succeeded, { restoreOnFail: true, command }), {
        decision: 'none',
      });
      assert.ok(!existsSync(join(sb.workspace, 'good.txt')));
      assert.deepEqual(await decideAfterRun(good, paths, succeeded, { acceptOnSuccess: true, command }), {
        decision: 'accepted',
        applied: 1,
      });
      assert.equal(readFileSync(join(sb.workspace, 'good.txt'), 'utf8'), 'y\n');
      assert.ok(!existsSync(join(sb.workspace, 'failed.txt')), 'the restored run left nothing to accept');

      const readonly = await prepare(sb, ['true'], { workspaceMode: 'readonly' });
      assert.deepEqual(await decideAfterRun(readonly, paths, await run(readonly), { acceptOnSuccess: true, command }), {
        decision: 'live',
        workspaceMode: 'readonly',
      });
    } finally {
      sb.cleanup();
    }
  });
});

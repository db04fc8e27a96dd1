import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as agentcell from '../src/index.js';
import { makeSandbox } from './helpers.js';

/** The library does what the CLI does: a whole transaction through the public entry point alone. */
describe('library API', () => {
  it('prepare, run, diff, accept and verify through src/index', async () => {
    const sb = makeSandbox({ 'a.txt': 'a\n' });
    try {
      const paths = agentcell.agentcellPaths(sb.env);
      const prepared = await agentcell.prepareRun({
        argv: ['sh', '-c', 'echo b > b.txt'],
        tty: false,
        paths,
        hostEnv: sb.env,
        cwd: sb.workspace,
      });
      const { outcome, receipt } = await agentcell.runPrepared(prepared, paths);
      assert.equal(outcome.exitCode, 0);
      assert.equal(receipt.changes.added, 1);
      const ref = { paths, cell: prepared.cell, workspace: prepared.workspace, command: ['library-test'] };
      assert.deepEqual(await agentcell.cellDiff(ref), [{ path: 'b.txt', change: 'added', kind: 'file' }]);
      const accepted = await agentcell.acceptCell(ref, { force: false, dryRun: false });
      assert.equal(accepted.applied.length, 1);
      assert.equal(readFileSync(join(sb.workspace, 'b.txt'), 'utf8'), 'b\n');
      const cellDir = join(paths.state, 'cells', prepared.cell);
      const verified = agentcell.verifyCell(cellDir, agentcell.loadPublicKeys(paths.config));
      assert.deepEqual(verified, { ok: true, checked: 2, problems: [] });
    } finally {
      sb.cleanup();
    }
  });
});

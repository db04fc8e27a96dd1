import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ac, acJson, makeSandbox } from './helpers.js';

describe('cell rm keeps receipts when asked', () => {
  it('--keep-receipts copies receipts, anchor and public key out; without it they go, and the note says so', () => {
    const sb = makeSandbox();
    try {
      for (const cell of ['kept', 'dropped']) assert.equal(ac(sb, 'run', '--cell', cell, '--', 'true').status, 0);
      const dry = acJson<{ removed: boolean; receipts: number; keptReceipts: null }>(
        sb,
        ...['cell', 'rm', 'kept', '--keep-receipts', '--dry-run', '--json'],
      );
      assert.deepEqual([dry.removed, dry.receipts, dry.keptReceipts], [false, 1, null]);
      assert.ok(existsSync(join(sb.agentcellHome, 'state', 'cells', 'kept')), 'dry run removed the cell');
      const kept = acJson<{ keptReceipts: string }>(sb, 'cell', 'rm', 'kept', '--keep-receipts', '--json');
      const files = readdirSync(kept.keptReceipts).sort();
      assert.ok(files.includes('receipts') && files.includes('cell.json') && files.includes('receipts-ed25519.pub'));
      assert.ok(
        files.some((f) => /^kept-[0-9a-f]{12}\.json$/.test(f)),
        `the chain anchor is kept: ${files.join(', ')}`,
      );
      assert.equal(readdirSync(join(kept.keptReceipts, 'receipts')).filter((f) => f.endsWith('.json')).length, 1);
      assert.equal(existsSync(join(sb.agentcellHome, 'state', 'cells', 'kept')), false);
      // Not a terminal: no question, the receipts go and the note says how to keep them.
      const dropped = ac(sb, 'cell', 'rm', 'dropped');
      assert.equal(dropped.status, 0, dropped.stderr);
      assert.match(dropped.stderr, /deleted its 1 receipt\(s\) \(--keep-receipts keeps them\)/);
    } finally {
      sb.cleanup();
    }
  });
});

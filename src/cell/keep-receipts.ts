import { cpSync, existsSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { AgentcellPaths } from '../paths.js';
import { anchorPath } from '../receipts/chain-anchor.js';
import { receiptsDir } from '../receipts/receipt-store.js';
import { keyPaths } from '../receipts/signing-key.js';
import { makeDirs } from '../_internal/make-dirs.js';
import { cellDir } from './cell-store.js';

/** Where `cell rm --keep-receipts` puts a removed cell's receipts. */
export function keptReceiptsDir(paths: AgentcellPaths): string {
  return join(paths.state, 'kept-receipts');
}

/** How many receipts a cell has (what `cell rm` would delete). */
export function receiptCount(paths: AgentcellPaths, name: string): number {
  const dir = receiptsDir(cellDir(paths, name));
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')).length : 0;
}

/**
 * Copies a cell's receipts, its record, the chain's anchor and the public keys that
 * verify them out of the cell before it is removed: what someone needs later to check
 * what ran there. Returns the directory (named after the cell and the time).
 */
export function keepReceipts(paths: AgentcellPaths, name: string, now = new Date()): string {
  const dir = cellDir(paths, name);
  const target = join(keptReceiptsDir(paths), `${name}-${now.toISOString().replace(/[:.]/g, '-')}`);
  makeDirs(target, 0o700);
  const receipts = receiptsDir(dir);
  if (existsSync(receipts)) cpSync(receipts, join(target, 'receipts'), { recursive: true });
  for (const file of [join(dir, 'cell.json'), anchorPath(paths.config, dir, name), keyPaths(paths.config).publicKey])
    if (existsSync(file)) cpSync(file, join(target, basename(file)));
  return target;
}

import { basename } from 'node:path';
import { AgentcellError } from '../errors.js';
import { sha256 } from '../_internal/canonical-hash.js';

const CELL_NAME = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/;

/** The workspace's default cell: its folder name plus a short hash of its path, so two clones differ. */
export function defaultCellName(workspace: string): string {
  const base = basename(workspace)
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 48);
  return `${base || 'workspace'}-${sha256(workspace).slice(0, 6)}`;
}

/**
 * A valid cell name, lowercased: names are case-insensitive (`MyCell` is the cell `mycell`),
 * so two spellings can never be two cells, and OCI container names (lowercase only) follow.
 */
export function checkCellName(name: string): string {
  if (!CELL_NAME.test(name))
    throw new AgentcellError(
      'USAGE',
      `invalid cell name ${JSON.stringify(name)}: use 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit (case does not matter: MyCell is the cell mycell)`,
    );
  return name.toLowerCase();
}

import { cellDir } from '../cell/cell-store.js';
import { AgentcellError } from '../errors.js';
import type { SessionExport } from '../evidence/evidence-bundle.js';
import type { AgentcellPaths } from '../paths.js';
import { listReceipts } from '../receipts/receipt-store.js';
import { findSession } from './session-record.js';
import { readTranscript } from './session-transcript.js';
import { terminalText } from './terminal-text.js';

/**
 * What `evidence export --session ID` adds to its run's bundle: the transcript up to
 * the byte count the run's receipt signed (its sha256 covers exactly those bytes), raw,
 * and as plain text.
 */
export function sessionExport(paths: AgentcellPaths, id: string): SessionExport {
  const { dir, record } = findSession(paths, id);
  const run = record.run;
  if (run === null)
    throw new AgentcellError(
      'SESSION_NOT_RUNNING',
      `session ${record.id} never started its run (state ${record.state}): there is nothing to export`,
    );
  const receipt = listReceipts(cellDir(paths, record.cell)).find((r) => r.id === run);
  if (!receipt)
    throw new AgentcellError(
      'RECEIPT_NOT_FOUND',
      `session ${record.id}'s run ${run} has no receipt yet (state ${record.state}): wait for it to end, or agentcell session stop ${record.id}`,
    );
  if (!receipt.transcript) return { id: record.id, run };
  const stored = readTranscript(dir, receipt.transcript.bytes);
  const dropped = stored.offset > 0 ? `[${stored.offset} earlier bytes dropped by the transcript cap]\n` : '';
  return {
    id: record.id,
    run,
    transcript: { raw: stored.data, offset: stored.offset, text: dropped + terminalText(stored.data.toString('utf8')) },
  };
}

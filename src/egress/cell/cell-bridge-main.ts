import { runBridgeCommand } from './cell-bridge.js';

/** The bridge run as a script in the cell: the entry of `dist/agentcell-bridge.cjs` (scripts/bundle.mjs). */
runBridgeCommand(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`agentcell-bridge: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});

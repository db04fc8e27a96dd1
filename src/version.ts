/** agentcell's version: `--version`, and `tools.agentcell` in every receipt. */
export const AGENTCELL_VERSION = '0.1.0';

import type { Policy } from '../policy/schema.js';

/** Where the brief sits in the cell's home, whatever the agent. */
export const BRIEF_FILE = 'AGENTCELL.md';

/**
 * The note an agent finds in its cell: that it runs in one, what a refusal from the
 * egress gateway means and that it must not try to get around it, and how the user
 * widens access. Built from the run's policy, so the hosts it lists are the real ones.
 */
export function agentBrief(policy: Policy): string {
  const { network, workspace, cell } = policy;
  const reach =
    network.mode === 'none'
      ? '- There is no network in this cell at all.'
      : network.mode === 'open'
        ? '- The network is open (a lower-assurance choice the user made).'
        : [
            '- The network goes only through the agentcell egress gateway (HTTPS_PROXY is set for you).',
            network.mode === 'learn'
              ? '- The user is learning which hosts you need: hosts outside the allowlist are reached and logged.'
              : `- Allowed hosts: ${network.allow.length > 0 ? network.allow.join(', ') : 'none'}.`,
          ].join('\n');
  const writes =
    workspace.mode === 'overlay'
      ? '- Your changes to the workspace stay in the cell until the user reviews them (`agentcell diff`) and accepts them. Control files (.git/hooks, .git/config, agentcell.toml, …) are read-only here.'
      : workspace.mode === 'readonly'
        ? '- The workspace is read-only here: you can read and run, not change files.'
        : '- Your changes land in the workspace directly.';
  return `# You are working inside an agentcell cell

This is a sandbox (${cell.backend}, mode ${cell.mode}). It is deliberate; it is not a bug to fix.

${reach}
${writes}
- Secret-looking files (.env, keys, credentials) are masked on purpose, and the host's home directory is not here.

If a request fails with HTTP 403 and a header \`X-Agentcell-Denied\` (or a body starting
\`agentcell: denied\`), the gateway refused it by policy. Do not try to get around it
(other hosts, raw sockets, DNS tricks, encodings): it will fail and it will be logged.
Tell the user what you needed and why; they can widen access with
\`agentcell allow HOST\` (or \`[network] allow\` in agentcell.toml) and run you again.

This file is read-only and written by agentcell on every run.
`;
}

/** The workflow `agentcell --help` opens with and the man page's EXAMPLE section shows. */
export const EXAMPLE_WORKFLOW = `Example:
  cd my-repo
  agentcell run -- npm test                    # any command, in the workspace's cell
  agentcell claude -p "fix the failing test"   # an agent through its adapter
  agentcell diff                               # what the cell changed, not yet on the host
  agentcell accept                             # apply it to the workspace (or: agentcell restore)
  agentcell receipt show --latest              # the signed receipt of the last run
`;

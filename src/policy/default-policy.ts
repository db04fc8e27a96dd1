import { DEFAULT_DISK_LIMIT, type Policy } from './schema.js';

/**
 * What the schema's defaults produce for an empty policy, written out so that a run with
 * no policy files and no flags never loads the validator (a test keeps the two equal).
 */
export function defaultPolicy(): Policy {
  return {
    cell: { backend: 'bwrap', mode: 'strict', rootfs: 'host', user: 'user' },
    workspace: { mode: 'overlay', hide: [], expose: [], scan_skip: ['.git', 'node_modules'] },
    mount: [],
    network: { allow: [], deny: [], inspect: [], resolve: {}, upstream_ca: [], rule: [] },
    secrets: {},
    resources: { disk: DEFAULT_DISK_LIMIT },
    env: {},
    agent: { args: [], brief: true },
  };
}

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ac, CLI, makeSandbox } from './helpers.js';
import { programTree } from './program-tree.js';

describe('help and man page', () => {
  it('agentcell --help opens with an example workflow', () => {
    const sb = makeSandbox();
    try {
      const help = ac(sb, '--help');
      assert.equal(help.status, 0);
      assert.match(help.stdout, /^Example:\n {2}cd my-repo\n {2}agentcell run -- npm test/);
    } finally {
      sb.cleanup();
    }
  });

  it('the man page is rendered from the commander definitions and built with the package', async () => {
    const built = readFileSync(join(CLI, '..', 'agentcell.1'), 'utf8');
    assert.match(built, /^\.TH AGENTCELL 1 /);
    const tree = await programTree();
    for (const command of tree.commands) assert.match(built, new RegExp(`^\\\\fB${command.name}\\\\fR`, 'm'));
    assert.match(built, /^\.B \\-\\-workspace\\-mode <mode>$/m);
    assert.match(built, /\(one of: bwrap, podman, docker, gvisor\)/);
  });
});

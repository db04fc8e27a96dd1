import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { countGitChanges, readGitState } from '../src/workspace/git-state.js';
import { ac, acJson, agentcell, makeSandbox, type Sandbox } from './helpers.js';

/**
 * The receipts' git state comes from one `git status --porcelain=v2 --branch` process: it
 * must say what `rev-parse HEAD` and porcelain v1 say, for every kind of entry.
 */

const git = (dir: string, ...args: string[]): string =>
  execFileSync('git', ['-c', 'user.email=t@example.com', '-c', 'user.name=t', '-C', dir, ...args], {
    encoding: 'utf8',
  });

function v1(dir: string): Map<string, string> {
  const entries = new Map<string, string>();
  const fields = git(dir, 'status', '--porcelain=v1', '-z', '--untracked-files=all').split('\0');
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i]!;
    if (field.length < 4) continue;
    entries.set(field.slice(3), field.slice(0, 2));
    if (/[RC]/.test(field.slice(0, 2))) i++;
  }
  return entries;
}

/** A sandbox whose workspace is a repository with one committed file, tracked.txt. */
function committedSandbox(): Sandbox {
  const sb = makeSandbox({ 'tracked.txt': 'tracked\n' });
  git(sb.workspace, 'init', '-q');
  git(sb.workspace, 'add', '-A');
  git(sb.workspace, 'commit', '-qm', 'base');
  return sb;
}

describe('readGitState', () => {
  it('reads HEAD and every status entry as rev-parse and porcelain v1 do', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentcell-git-state-'));
    try {
      git(dir, 'init', '-q');
      assert.deepEqual(await readGitState(dir), { gitRef: null, gitDirty: false, status: new Map() });
      writeFileSync(join(dir, 'before first commit.txt'), 'x');
      const initial = await readGitState(dir);
      assert.equal(initial.gitRef, null, 'no commit yet: no ref');
      assert.deepEqual(initial.status, v1(dir));

      for (const name of ['kept.txt', 'edited.txt', 'staged.txt', 'removed.txt', 'renamed.txt', 'with space.txt'])
        writeFileSync(join(dir, name), `${name}\n`.repeat(20));
      mkdirSync(join(dir, 'sub dir'));
      writeFileSync(join(dir, 'sub dir', 'deep.txt'), 'deep');
      git(dir, 'add', '-A');
      git(dir, 'commit', '-qm', 'base');
      const clean = await readGitState(dir);
      assert.equal(clean.gitRef, git(dir, 'rev-parse', 'HEAD').trim());
      assert.equal(clean.gitDirty, false);

      writeFileSync(join(dir, 'edited.txt'), 'changed');
      writeFileSync(join(dir, 'staged.txt'), 'changed and staged');
      git(dir, 'add', 'staged.txt');
      rmSync(join(dir, 'removed.txt'));
      renameSync(join(dir, 'renamed.txt'), join(dir, 'renamed now.txt'));
      git(dir, 'add', '-A', 'renamed.txt', 'renamed now.txt');
      writeFileSync(join(dir, 'with space.txt'), 'changed');
      writeFileSync(join(dir, 'sub dir', 'new file.txt'), 'new');
      const dirty = await readGitState(dir);
      assert.equal(dirty.gitRef, clean.gitRef);
      assert.equal(dirty.gitDirty, true);
      assert.deepEqual(dirty.status, v1(dir));
      assert.equal(dirty.status?.get('renamed now.txt')?.[0], 'R', 'the rename is one entry, under its new name');
      // A rename counts as a modification, as before.
      assert.deepEqual(countGitChanges(clean, dirty), { added: 1, modified: 4, deleted: 1 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('without untracked files: the same ref and dirtiness, and no untracked entries', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentcell-git-state-'));
    try {
      git(dir, 'init', '-q');
      writeFileSync(join(dir, 'tracked.txt'), 'tracked\n');
      git(dir, 'add', '-A');
      git(dir, 'commit', '-qm', 'base');
      writeFileSync(join(dir, 'untracked.txt'), 'new\n');
      const all = await readGitState(dir);
      const tracked = await readGitState(dir, { untracked: false });
      assert.equal(all.status?.get('untracked.txt'), '??');
      assert.deepEqual([tracked.gitRef, tracked.gitDirty], [all.gitRef, false], 'an untracked file is not dirt');
      assert.deepEqual(tracked.status, new Map());
      writeFileSync(join(dir, 'tracked.txt'), 'changed\n');
      const dirty = await readGitState(dir, { untracked: false });
      assert.deepEqual([dirty.gitRef, dirty.gitDirty], [all.gitRef, true]);
      assert.deepEqual(dirty.status, new Map([['tracked.txt', ' M']]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("is what an overlay run's and a direct run's receipts record", () => {
    const sb = committedSandbox();
    try {
      const head = git(sb.workspace, 'rev-parse', 'HEAD').trim();
      const recorded = (): unknown => {
        const receipt = acJson<{ workspace: { gitRef: unknown; gitDirty: unknown } }>(
          sb,
          'receipt',
          'show',
          '--latest',
          '--json',
        );
        return [receipt.workspace.gitRef, receipt.workspace.gitDirty];
      };
      writeFileSync(join(sb.workspace, 'untracked.txt'), 'new\n');
      for (const mode of ['overlay', 'direct']) {
        const r = ac(sb, 'run', '--mode', 'development', '--workspace-mode', mode, '--', 'true');
        assert.equal(r.status, 0, r.stderr);
        assert.deepEqual(recorded(), [head, false], `${mode}: untracked files only`);
      }
      writeFileSync(join(sb.workspace, 'tracked.txt'), 'changed on the host\n');
      for (const mode of ['overlay', 'direct']) {
        const r = ac(sb, 'run', '--mode', 'development', '--workspace-mode', mode, '--', 'true');
        assert.equal(r.status, 0, r.stderr);
        assert.deepEqual(recorded(), [head, true], `${mode}: a tracked file changed`);
      }
    } finally {
      sb.cleanup();
    }
  });

  it("a direct run's before-state is read before its command writes, however slow git is", () => {
    const sb = committedSandbox();
    try {
      // agentcell finds git on its PATH: this one takes a second before it answers.
      const shims = join(sb.root, 'shims');
      mkdirSync(shims);
      const realGit = execFileSync('sh', ['-c', 'command -v git'], { encoding: 'utf8' }).trim();
      writeFileSync(join(shims, 'git'), `#!/bin/sh\nsleep 1\nexec ${realGit} "$@"\n`, { mode: 0o755 });
      const env = { ...sb.env, PATH: `${shims}:${sb.env['PATH'] ?? ''}` };
      const args = ['run', '--mode', 'development', '--workspace-mode', 'direct', '--', 'sh', '-c'];
      // A first run notes the tools' versions (a blocking `git --version`, through the shim too).
      assert.equal(agentcell([...args, 'true'], { cwd: sb.workspace, env }).status, 0);
      const r = agentcell([...args, 'echo changed > tracked.txt'], { cwd: sb.workspace, env });
      assert.equal(r.status, 0, r.stderr);
      const receipt = acJson<{ changes: unknown }>(sb, 'receipt', 'show', '--latest', '--json');
      assert.deepEqual(receipt.changes, { added: 0, modified: 1, deleted: 0 });
    } finally {
      sb.cleanup();
    }
  });

  it('gives nulls outside a repository', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentcell-git-state-'));
    try {
      assert.deepEqual(await readGitState(dir), { gitRef: null, gitDirty: null, status: null });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

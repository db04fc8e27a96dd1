import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { ac, acJson, agentcell, agentcellAsync, makeSandbox, snapshot, type Sandbox } from './helpers.js';

let sb: Sandbox | undefined;
afterEach(() => {
  sb?.cleanup();
  sb = undefined;
});

const IDENTITY = ['-c', 'user.name=host', '-c', 'user.email=host@example.invalid'];

function git(cwd: string, ...args: string[]): string {
  const result = spawnSync('git', [...IDENTITY, ...args], { cwd, encoding: 'utf8' });
  assert.equal(result.status, 0, `git ${args.join(' ')}: ${result.stderr}`);
  return result.stdout.trim();
}

/** A host repo on `main` with one commit, plus an uncommitted edit the cells must never touch. */
function hostRepo(): Sandbox {
  const box = makeSandbox({ 'README.md': 'hello\n', 'src/app.txt': 'app\n' });
  git(box.workspace, 'init', '-q', '-b', 'main');
  git(box.workspace, 'add', '.');
  git(box.workspace, 'commit', '-q', '-m', 'initial');
  writeFileSync(join(box.workspace, 'README.md'), 'hello, edited on the host\n');
  return box;
}

/** The host's checkout as a user sees it: branch, HEAD, status and every work-tree file's content. */
function hostView(repo: string): { branch: string; head: string; status: string; files: [string, string][] } {
  return {
    branch: git(repo, 'symbolic-ref', 'HEAD'),
    head: git(repo, 'rev-parse', 'HEAD'),
    status: git(repo, 'status', '--porcelain'),
    files: [...snapshot(repo)].filter(([path]) => path !== '.git' && !path.startsWith('.git/')),
  };
}

describe('branch cells (bwrap)', () => {
  it('three cells on three branches run at once; each branch lands intact; the host checkout never changes', async () => {
    sb = hostRepo();
    const box = sb;
    const before = hostView(box.workspace);
    const names = ['b1', 'b2', 'b3'];
    const runs = await Promise.all(
      names.map((name) =>
        agentcellAsync(
          box,
          [
            'run',
            '--backend',
            'bwrap',
            '--branch',
            name,
            '--',
            'sh',
            '-c',
            `echo ${name} > f; git add f; git commit -q -m "work on ${name}"; git log -1 --format=%s`,
          ],
          { timeoutMs: 120_000 },
        ),
      ),
    );
    for (const [i, run] of runs.entries()) {
      assert.equal(run.status, 0, run.stderr);
      assert.equal(run.stdout.trim(), `work on ${names[i]}`);
    }
    assert.deepEqual(hostView(box.workspace), before, 'running changed the host checkout');

    const listed = acJson<
      { name: string; branch: string | null; base: string | null; state: string; pending: number }[]
    >(box, 'cell', 'list', '--json');
    for (const name of names) {
      const row = listed.find((r) => r.name === name);
      assert.ok(row, `cell list has ${name}`);
      assert.equal(row.branch, name);
      assert.equal(row.base, before.head);
      assert.equal(row.state, 'idle');
      assert.ok(row.pending > 0, 'the commit is pending until accepted');
    }

    for (const name of names) {
      const accepted = ac(box, 'accept', '--cell', name, '--json');
      assert.equal(accepted.status, 0, accepted.stderr);
      const report = JSON.parse(accepted.stdout) as { landed?: { branch: string; commit?: string } };
      assert.equal(report.landed?.branch, name);
      assert.match(report.landed?.commit ?? '', /^[0-9a-f]{40}$/);
    }
    for (const name of names) {
      assert.equal(git(box.workspace, 'log', '-1', '--format=%s', name), `work on ${name}`);
      assert.equal(git(box.workspace, 'rev-parse', `${name}~1`), before.head, `${name} grows from main`);
      assert.equal(git(box.workspace, 'show', `${name}:f`), name);
    }
    git(box.workspace, 'fsck', '--strict');
    assert.deepEqual(hostView(box.workspace), before, 'landing changed the host checkout');
  });

  it("landing runs none of the cell's hooks, git config or attribute filters (canary stays absent)", () => {
    sb = hostRepo();
    const canary = join(sb.root, 'canary');
    const payload = `touch ${canary}`;
    // Positive control: the same payloads, honoured by git on the host, do create the canary.
    const control = join(sb.root, 'control');
    mkdirSync(control);
    git(control, 'init', '-q');
    git(control, 'config', 'core.fsmonitor', payload);
    writeFileSync(join(control, 'x'), 'x\n');
    git(control, 'status', '--porcelain');
    assert.ok(existsSync(canary), 'the probe can see a payload that runs');
    spawnSync('rm', ['-f', canary]);

    const attack = [
      `printf '#!/bin/sh\\n${payload}\\n' > .git/hooks/post-checkout`,
      `printf '#!/bin/sh\\n${payload}\\n' > .git/hooks/post-merge`,
      `git config core.hooksPath /tmp`,
      `git config core.fsmonitor '${payload}'`,
      `git config filter.evil.clean '${payload}'`,
      `git config filter.evil.smudge '${payload}'`,
      `mkdir -p .git/info && printf '* filter=evil\\n' > .git/info/attributes`,
      `printf '* filter=evil\\n' > .gitattributes`,
      'echo change > f',
      'git add -A',
      'git commit -q -m attack',
      'exit 0',
    ].join('; ');
    const run = ac(sb, 'run', '--backend', 'bwrap', '--branch', 'evil', '--', 'sh', '-c', attack);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stderr, /hooks\/post-checkout: (Read-only file system|Permission denied)/, 'hooks are read-only');
    assert.match(run.stderr, /could not (write|lock) config file/, "the checkout's config is read-only");

    // --force applies every control-plane change the cell managed to make to its checkout.
    const accepted = ac(sb, 'accept', '--cell', 'evil', '--force', '--json');
    assert.equal(accepted.status, 0, accepted.stderr);
    assert.equal(git(sb.workspace, 'log', '-1', '--format=%s', 'evil'), 'attack');
    assert.equal(git(sb.workspace, 'show', 'evil:.gitattributes'), '* filter=evil');
    const checkout = join(`${sb.workspace}.cells`, 'evil');
    const config = readFileSync(join(checkout, '.git', 'config'), 'utf8');
    assert.doesNotMatch(config, /fsmonitor|hooksPath|filter/, "landing put the host's config back");

    // The next run reads the checkout's git state with the host's git: still nothing runs.
    const again = ac(sb, 'run', '--backend', 'bwrap', '--branch', 'evil', '--', 'true');
    assert.equal(again.status, 0, again.stderr);
    git(sb.workspace, 'fsck', '--strict');
    assert.equal(existsSync(canary), false, 'a payload of the cell ran on the host');
  });

  it('refuses the branch the host has checked out, and --from without --branch', () => {
    sb = hostRepo();
    const checkedOut = ac(sb, 'run', '--backend', 'bwrap', '--branch', 'main', '--', 'true');
    assert.equal(checkedOut.status, 2);
    assert.match(checkedOut.stderr, /checked out/);
    const from = ac(sb, 'run', '--backend', 'bwrap', '--from', 'main', '--', 'true');
    assert.equal(from.status, 2);
    assert.match(from.stderr, /--from needs --branch/);
    const dry = ac(sb, 'run', '--backend', 'bwrap', '--branch', 'dry', '--dry-run', '--', 'true');
    assert.equal(dry.status, 0, dry.stderr);
    assert.match(dry.stdout, /would check out HEAD/);
    assert.equal(existsSync(`${sb.workspace}.cells`), false, '--dry-run made the checkout');
  });
  it('publish pushes the landed branch to a remote with the host git, shows it with --dry-run, and refuses inside a cell', () => {
    sb = hostRepo();
    const remote = join(sb.root, 'remote.git');
    git(sb.root, 'init', '-q', '--bare', remote);
    git(sb.workspace, 'remote', 'add', 'origin', remote);
    const run = ac(
      sb,
      'run',
      '--backend',
      'bwrap',
      '--branch',
      'pub',
      '--',
      'sh',
      '-c',
      'echo p > p; git add p; git commit -q -m "add p"; echo "marker=$AGENTCELL_IN_CELL"',
    );
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /^marker=1$/m, 'a cell carries the in-cell marker');
    const early = ac(sb, 'publish', '--cell', 'pub');
    assert.equal(early.status, 2);
    assert.match(early.stderr, /land it first/);
    assert.equal(ac(sb, 'accept', '--cell', 'pub').status, 0);

    const dry = acJson<{ push: string[]; pushed: boolean; prBody: string }>(
      sb,
      'publish',
      '--cell',
      'pub',
      '--dry-run',
      '--json',
    );
    assert.equal(dry.pushed, false);
    assert.deepEqual(dry.push.slice(-2), ['origin', 'refs/heads/pub:refs/heads/pub']);
    assert.match(dry.prBody, /git add p; git commit/);
    assert.match(dry.prBody, /Egress: 0 allowed, 0 denied/);
    assert.equal(
      spawnSync('git', ['-C', remote, 'rev-parse', '--verify', '-q', 'refs/heads/pub']).status,
      1,
      '--dry-run pushed',
    );

    const inCell = agentcell(['publish', '--cell', 'pub'], {
      cwd: sb.workspace,
      env: { ...sb.env, AGENTCELL_IN_CELL: '1' },
    });
    assert.equal(inCell.status, 2);
    assert.match(inCell.stderr, /never inside a cell/);
    assert.equal(
      spawnSync('git', ['-C', remote, 'rev-parse', '--verify', '-q', 'refs/heads/pub']).status,
      1,
      'pushed from a cell',
    );

    const published = acJson<{ pushed: boolean; commit: string }>(sb, 'publish', '--cell', 'pub', '--json');
    assert.equal(published.pushed, true);
    assert.equal(git(remote, 'rev-parse', 'refs/heads/pub'), published.commit);
    assert.equal(git(remote, 'log', '-1', '--format=%s', 'pub'), 'add p');
  });
});

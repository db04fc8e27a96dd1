import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { complete, type CompletionSources } from '../src/cli/completion.js';
import { ac, CLI, makeSandbox, type Sandbox } from './helpers.js';
import { programTree } from './program-tree.js';

const sources: CompletionSources = {
  cells: () => ['alpha', 'beta'],
  checkpoints: (cell) => (cell === 'beta' ? ['before-refactor', 'c1d2e3'] : ['main-cp']),
  agents: () => ['claude', 'codex'],
};

describe('completion engine (the one every shell script calls)', () => {
  it('completes commands, subcommands, options, choices, cells, checkpoints and agents', async () => {
    const tree = await programTree();
    const words = (...w: string[]): readonly string[] => complete(tree, w, sources).words;
    assert.ok(words('ru').includes('run'));
    assert.deepEqual(words('cell', ''), ['list', 'rm', 'show']);
    assert.deepEqual(words('cell', 'show', ''), ['alpha', 'beta']);
    assert.deepEqual(words('run', '--backend', 'p'), ['podman']);
    assert.deepEqual(words('run', '--cell', 'a'), ['alpha']);
    assert.deepEqual(words('run', '--agent', ''), ['claude', 'codex']);
    assert.ok(words('run', '--work').includes('--workspace-mode'));
    // restore --to completes the checkpoints of the cell named earlier on the line.
    assert.deepEqual(words('restore', '--cell', 'beta', '--to', ''), ['before-refactor', 'c1d2e3']);
    assert.deepEqual(words('restore', '--to', ''), ['main-cp']);
    // After `--` the words are the cell's command: the shell completes files.
    assert.deepEqual(complete(tree, ['run', '--', 'np'], sources), { words: [], files: true });
    assert.equal(complete(tree, ['run', '--workspace', ''], sources).files, true);
  });
});

describe('completion scripts in real shells', () => {
  let sb: Sandbox;
  before(() => {
    sb = makeSandbox();
    const run = ac(sb, 'run', '--cell', 'alpha-cell', '--', 'true');
    assert.equal(run.status, 0, run.stderr);
  });
  after(() => sb.cleanup());

  const shell = (exe: string, script: string): string => {
    const r = spawnSync(exe, ['-c', script], { env: { ...sb.env, CLI }, encoding: 'utf8', cwd: sb.workspace });
    assert.equal(r.status, 0, `${exe}: ${r.stderr}`);
    return r.stdout;
  };

  it('bash: the script loads and completes a cell name', () => {
    const out = shell(
      'bash',
      'source <("$CLI" completion bash) && COMP_WORDS=(agentcell cell show alp) && COMP_CWORD=3 && _agentcell && printf "%s\\n" "${COMPREPLY[@]}" && complete -p agentcell',
    );
    assert.match(out, /^alpha-cell$/m);
    assert.match(out, /complete -F _agentcell agentcell/);
  });

  it('zsh: the script registers with compinit and completes a cell name', () => {
    const registered = shell(
      'zsh',
      'autoload -U compinit && compinit -u -D && source <("$CLI" completion zsh) && print -r -- $_comps[agentcell]',
    );
    assert.equal(registered.trim(), '_agentcell');
    // compadd is the completion system's output; stand in for it to see what _agentcell offers.
    const offered = shell(
      'zsh',
      'compdef() { :; }; source <("$CLI" completion zsh); compadd() { print -rl -- "${@:#--}"; }; words=(agentcell run --cell alp); CURRENT=4; _agentcell',
    );
    assert.match(offered, /^alpha-cell$/m);
  });

  it('fish: complete -C offers the cell name', () => {
    const out = shell('fish', 'source ("$CLI" completion fish | psub); complete -C "agentcell run --cell alp"');
    assert.match(out, /^alpha-cell/m);
  });
});

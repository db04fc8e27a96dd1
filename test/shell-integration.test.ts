import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Ajv } from 'ajv';
import { parse } from 'smol-toml';
import { describeCommand } from '../src/cli/command-tree.js';
import { complete, type CompletionSources } from '../src/cli/completion.js';
import { PROFILES, renderProfile } from '../src/policy/init-profiles.js';
import { policyJsonSchema, policySchemaUrl } from '../src/policy/policy-json-schema.js';
import { ac, acJson, agentcell, CLI, makeSandbox, type Sandbox } from './helpers.js';

/** The program exactly as the CLI builds it. */
async function programTree(): Promise<ReturnType<typeof describeCommand>> {
  const { buildProgram } = await import('../src/cli/program.js');
  const { PhaseTimer } = await import('../src/run/phase-timer.js');
  return describeCommand(await buildProgram({ timer: new PhaseTimer(), setExit: () => undefined }));
}

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

describe('agentcell.toml JSON Schema', () => {
  const ajv = new Ajv({ strict: false, allErrors: true });
  const validate = ajv.compile(policyJsonSchema());

  for (const profile of PROFILES)
    it(`validates the ${profile} profile init writes`, () => {
      assert.equal(validate(parse(renderProfile(profile))), true, ajv.errorsText(validate.errors));
    });

  it('rejects a misspelt key and a value outside its choices, naming them', () => {
    assert.equal(validate(parse('[cell]\nbackend = "bwrap"\nbakend = "x"\n')), false);
    assert.match(ajv.errorsText(validate.errors), /additional properties/i);
    assert.match(JSON.stringify(validate.errors), /bakend/);
    assert.equal(validate(parse('[network]\nmode = "wide-open"\n')), false);
    assert.match(JSON.stringify(validate.errors), /\/network\/mode/);
  });

  it('ships beside the package, matches the zod schema, and init points editors at it', () => {
    const url = policySchemaUrl();
    assert.ok(url, 'the built package has schemas/agentcell.schema.json');
    assert.deepEqual(JSON.parse(readFileSync(fileURLToPath(url), 'utf8')), policyJsonSchema());
    const sb = makeSandbox();
    try {
      const init = ac(sb, 'init', '--dry-run');
      assert.equal(init.status, 0, init.stderr);
      assert.equal(init.stdout.split('\n')[0], `#:schema ${url}`);
    } finally {
      sb.cleanup();
    }
  });
});

describe('cell rm keeps receipts when asked', () => {
  it('--keep-receipts copies receipts, anchor and public key out; without it they go, and the note says so', () => {
    const sb = makeSandbox();
    try {
      for (const cell of ['kept', 'dropped']) assert.equal(ac(sb, 'run', '--cell', cell, '--', 'true').status, 0);
      const dry = acJson<{ removed: boolean; receipts: number; keptReceipts: null }>(
        sb,
        ...['cell', 'rm', 'kept', '--keep-receipts', '--dry-run', '--json'],
      );
      assert.deepEqual([dry.removed, dry.receipts, dry.keptReceipts], [false, 1, null]);
      assert.ok(existsSync(join(sb.agentcellHome, 'state', 'cells', 'kept')), 'dry run removed the cell');
      const kept = acJson<{ keptReceipts: string }>(sb, 'cell', 'rm', 'kept', '--keep-receipts', '--json');
      const files = readdirSync(kept.keptReceipts).sort();
      assert.ok(files.includes('receipts') && files.includes('cell.json') && files.includes('receipts-ed25519.pub'));
      assert.ok(
        files.some((f) => /^kept-[0-9a-f]{12}\.json$/.test(f)),
        `the chain anchor is kept: ${files.join(', ')}`,
      );
      assert.equal(readdirSync(join(kept.keptReceipts, 'receipts')).filter((f) => f.endsWith('.json')).length, 1);
      assert.equal(existsSync(join(sb.agentcellHome, 'state', 'cells', 'kept')), false);
      // Not a terminal: no question, the receipts go and the note says how to keep them.
      const dropped = ac(sb, 'cell', 'rm', 'dropped');
      assert.equal(dropped.status, 0, dropped.stderr);
      assert.match(dropped.stderr, /deleted its 1 receipt\(s\) \(--keep-receipts keeps them\)/);
    } finally {
      sb.cleanup();
    }
  });
});

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

describe('login status and logout', () => {
  it('login status --json names each source of a credential and never its value', () => {
    const sb = makeSandbox({
      'agentcell.toml':
        '[secrets.OPENAI_API_KEY]\nfrom = "cmd:pass show openai --token sk-inline"\ninject = "proxy"\nhost = "api.openai.com"\nheader = "authorization"\n',
    });
    try {
      const key = 'sk-ant-test-VALUE-must-not-show';
      const r = agentcell(['login', 'status', '--json'], {
        cwd: sb.workspace,
        env: { ...sb.env, ANTHROPIC_API_KEY: key },
      });
      assert.equal(r.status, 0, r.stderr);
      assert.ok(!r.stdout.includes(key) && !r.stdout.includes('sk-inline'), 'a value leaked into login status');
      const rows = JSON.parse(r.stdout) as { agent: string; ready: boolean; sources: { kind: string }[] }[];
      const claude = rows.find((row) => row.agent === 'claude');
      assert.deepEqual(claude?.sources, [
        { kind: 'host-variable', variable: 'ANTHROPIC_API_KEY', injectedAs: 'x-api-key', host: 'api.anthropic.com' },
      ]);
      const codex = rows.find((row) => row.agent === 'codex');
      assert.deepEqual(codex?.sources, [
        { kind: 'policy-secret', secret: 'OPENAI_API_KEY', from: 'cmd:pass …', inject: 'proxy' },
      ]);
      assert.equal(rows.find((row) => row.agent === 'gemini')?.ready, false);
    } finally {
      sb.cleanup();
    }
  });

  it('logout deletes the stored login and the copies in cells, and --dry-run deletes nothing', () => {
    const sb = makeSandbox();
    try {
      const stored = join(sb.agentcellHome, 'config', 'credentials', 'claude', '.claude', '.credentials.json');
      const copy = join(sb.agentcellHome, 'state', 'cells', 'c1', 'agent-home', '.claude', '.credentials.json');
      for (const file of [stored, copy]) {
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, '{"token":"x"}');
      }
      const status = acJson<{ agent: string; sources: { kind: string; path?: string }[] }[]>(
        sb,
        'login',
        'status',
        '--json',
      );
      assert.deepEqual(
        status.find((s) => s.agent === 'claude')?.sources.map((s) => [s.kind, s.path]),
        [['stored-login', stored]],
      );
      const dry = acJson<{ removed: string[] }>(sb, 'logout', 'claude', '--dry-run', '--json');
      assert.deepEqual(dry.removed.sort(), [copy, stored].sort());
      assert.ok(existsSync(stored) && existsSync(copy), 'dry run deleted');
      assert.equal(ac(sb, 'logout', 'claude').status, 0);
      assert.equal(existsSync(stored) || existsSync(copy), false);
      assert.equal(ac(sb, 'logout', 'nosuch').status, 2);
    } finally {
      sb.cleanup();
    }
  });
});

describe('a login the agent refreshes in the cell', () => {
  it('is written back to the store after the run, and no copy stays in the cell', () => {
    const sb = makeSandbox({ 'agentcell.toml': '[agent]\nsource = "host"\n' });
    try {
      // A stand-in for the agent's CLI (the mechanism under test is agentcell's, not Claude's):
      // it reads the login it was given, then refreshes it, as an OAuth client does.
      const bin = join(sb.root, 'bin');
      mkdirSync(bin);
      writeFileSync(
        join(bin, 'claude'),
        '#!/bin/sh\ncat ~/.claude/.credentials.json > seen-login.txt\nprintf \'{"token":"refreshed"}\' > ~/.claude/.credentials.json\n',
        { mode: 0o755 },
      );
      const stored = join(sb.agentcellHome, 'config', 'credentials', 'claude', '.claude', '.credentials.json');
      mkdirSync(dirname(stored), { recursive: true });
      writeFileSync(stored, '{"token":"old"}');
      const r = agentcell(['claude', '-p', 'hi'], {
        cwd: sb.workspace,
        env: { ...sb.env, PATH: `${bin}:${sb.env['PATH'] ?? ''}` },
      });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(readFileSync(stored, 'utf8'), '{"token":"refreshed"}', 'the refresh went back to the store');
      const cells = join(sb.agentcellHome, 'state', 'cells');
      for (const cell of readdirSync(cells))
        assert.equal(
          existsSync(join(cells, cell, 'agent-home', '.claude', '.credentials.json')),
          false,
          'a copy stayed',
        );
      assert.equal(existsSync(join(sb.workspace, 'seen-login.txt')), false, 'the run wrote to the workspace');
      const diff = acJson<{ path: string }[]>(sb, 'diff', '--json');
      assert.deepEqual(
        diff.map((c) => c.path),
        ['seen-login.txt'],
      );
      assert.match(ac(sb, 'diff', '--patch').stdout, /^\+\{"token":"old"\}$/m, 'the cell got the stored login');
    } finally {
      sb.cleanup();
    }
  });
});

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { AgentcellError } from '../src/errors.js';
import { agentcellPaths } from '../src/paths.js';
import { explainPolicy } from '../src/policy/explain-policy.js';
import { hostPatternProblem } from '../src/policy/host-pattern.js';
import { readPolicyFile } from '../src/policy/policy-layer.js';
import { resolvePolicy } from '../src/policy/resolve-policy.js';
import { defaultPolicy } from '../src/policy/default-policy.js';
import { PolicySchema } from '../src/policy/schema.js';
import { agentcell, makeSandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
afterEach(() => sb?.cleanup());

function resolveIn(box: Sandbox, flags?: Record<string, unknown>) {
  return resolvePolicy({ workspace: box.workspace, paths: agentcellPaths(box.env), ...(flags ? { flags } : {}) });
}

function userConfig(box: Sandbox, text: string): void {
  mkdirSync(join(box.agentcellHome, 'config'), { recursive: true });
  writeFileSync(join(box.agentcellHome, 'config', 'config.toml'), text);
}

describe('policy', () => {
  it('the written-out default policy is what the schema produces for an empty file', () => {
    const parsed = PolicySchema.parse({});
    assert.deepEqual(defaultPolicy(), parsed);
  });

  it('built-in defaults validate and hash stably', async () => {
    sb = makeSandbox();
    const a = await resolveIn(sb);
    const b = await resolveIn(sb);
    assert.equal(a.policy.cell.backend, 'bwrap');
    assert.equal(a.policy.network.mode, 'none');
    assert.match(a.hash, /^sha256:[0-9a-f]{64}$/);
    assert.equal(a.hash, b.hash);
  });

  it('merges built-in < user < project < flags, and explains where values came from', async () => {
    sb = makeSandbox({
      'agentcell.toml': '[cell]\nmode = "build"\n[network]\nallow = ["b.example.com"]\n[env]\nA = "project"\n',
    });
    userConfig(sb, '[cell]\nmode = "strict"\n[network]\nallow = ["a.example.com"]\n[env]\nA = "user"\nB = "user"\n');
    const r = await resolveIn(sb, { network: { mode: 'none' } });
    const project = join(sb.workspace, 'agentcell.toml');
    const user = join(sb.agentcellHome, 'config', 'config.toml');
    assert.equal(r.policy.cell.mode, 'build');
    assert.deepEqual(r.policy.env, { A: 'project', B: 'user' });
    assert.deepEqual(r.policy.network.allow, ['a.example.com', 'b.example.com']);
    assert.equal(r.policy.network.mode, 'none');
    const explained = new Map(explainPolicy(r).map((row) => [row.key, row.from]));
    assert.deepEqual(explained.get('cell.mode'), [project]);
    assert.deepEqual(explained.get('env.B'), [user]);
    assert.deepEqual(explained.get('network.allow'), [user, project]);
    assert.deepEqual(explained.get('network.mode'), ['command line']);
    assert.deepEqual(explained.get('cell.backend'), ['built-in']);
    assert.notEqual(r.hash, (await resolveIn(sb)).hash);
  });

  it('network mode defaults follow the mode', async () => {
    sb = makeSandbox({ 'agentcell.toml': '[cell]\nmode = "build"\n' });
    const r = await resolveIn(sb);
    assert.equal(r.policy.network.mode, 'open');
    assert.match(explainPolicy(r, 'network.mode')[0]?.from[0] ?? '', /default for mode build/);
  });

  it('rejects a malformed file naming the file, key and expected value', () => {
    sb = makeSandbox({ 'agentcell.toml': '[network]\nmode = "opne"\n' });
    const file = join(sb.workspace, 'agentcell.toml');
    assert.throws(
      () => readPolicyFile(file),
      (e: unknown) =>
        e instanceof AgentcellError &&
        e.code === 'POLICY_INVALID' &&
        e.message.includes(file) &&
        e.message.includes('network.mode') &&
        e.message.includes('"none"|"allowlist"|"learn"|"open"'),
    );
  });

  it('rejects unknown keys instead of ignoring them', async () => {
    sb = makeSandbox({ 'agentcell.toml': '[network]\nallwo = ["x.com"]\n' });
    await assert.rejects(() => resolveIn(sb), /unknown key in \[network\] "allwo"/);
  });

  it('reports TOML syntax errors with line and column', async () => {
    sb = makeSandbox({ 'agentcell.toml': '[cell]\nmode = \n' });
    await assert.rejects(() => resolveIn(sb), /agentcell\.toml:2:\d+: not valid TOML/);
  });

  it('refuses open-ended host patterns', async () => {
    assert.match(hostPatternProblem('*') ?? '', /bare wildcard/);
    assert.match(hostPatternProblem('*.com') ?? '', /top-level domain/);
    assert.equal(hostPatternProblem('*.example.com'), undefined);
    assert.equal(hostPatternProblem('example.com:443'), undefined);
    assert.equal(hostPatternProblem('[::1]:8443'), undefined);
    assert.match(hostPatternProblem('example.com:99999') ?? '', /out of range/);
    sb = makeSandbox({ 'agentcell.toml': '[network]\nallow = ["*"]\n' });
    await assert.rejects(() => resolveIn(sb), /network\.allow\.0.*bare wildcard/);
  });

  it('validates secrets, sizes and durations', async () => {
    sb = makeSandbox({
      'agentcell.toml':
        '[secrets.TOKEN]\nfrom = "vault"\ninject = "proxy"\n[resources]\nmemory = "lots"\ntimeout = "soon"\n',
    });
    await assert.rejects(
      () => resolveIn(sb),
      (e: unknown) => {
        const m = (e as Error).message;
        return (
          /secrets\.TOKEN\.from/.test(m) &&
          /resources\.memory/.test(m) &&
          /resources\.timeout/.test(m) &&
          /host and header/.test(m)
        );
      },
    );
  });
});

describe('policy commands', () => {
  it('a malformed agentcell.toml makes run exit 2 with the key named, and runs nothing', () => {
    sb = makeSandbox({ 'agentcell.toml': '[workspace]\nmode = 3\n' });
    const r = agentcell(['run', '--', 'touch', 'ran'], { cwd: sb.workspace, env: sb.env });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /agentcell\.toml: key "workspace\.mode"/);
    const j = agentcell(['run', '--json', '--', 'touch', 'ran'], { cwd: sb.workspace, env: sb.env });
    assert.equal(j.status, 2);
    const body = JSON.parse(j.stdout) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'POLICY_INVALID');
    assert.equal(existsSync(join(sb.workspace, 'ran')), false);
  });

  it('policy show, validate and explain', () => {
    sb = makeSandbox({ 'agentcell.toml': '[env]\nFOO = "bar"\n' });
    const show = agentcell(['policy', 'show', '--json'], { cwd: sb.workspace, env: sb.env });
    assert.equal(show.status, 0, show.stderr);
    const shown = JSON.parse(show.stdout) as { hash: string; policy: { env: Record<string, string> } };
    assert.equal(shown.policy.env['FOO'], 'bar');
    const validate = agentcell(['policy', 'validate'], { cwd: sb.workspace, env: sb.env });
    assert.equal(validate.status, 0);
    const explain = agentcell(['policy', 'explain', 'env.FOO', '--mode', 'strict'], { cwd: sb.workspace, env: sb.env });
    assert.match(explain.stdout, /env\.FOO = "bar" +# .*agentcell\.toml/);
    const mode = agentcell(['policy', 'explain', 'cell.mode', '--mode', 'strict', '--json'], {
      cwd: sb.workspace,
      env: sb.env,
    });
    assert.deepEqual(JSON.parse(mode.stdout), [{ key: 'cell.mode', value: 'strict', from: ['command line'] }]);
    const missing = agentcell(['policy', 'explain', 'nope'], { cwd: sb.workspace, env: sb.env });
    assert.equal(missing.status, 2);
  });
});

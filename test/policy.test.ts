import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { AgentcellError } from '../src/errors.js';
import { agentcellPaths } from '../src/paths.js';
import { explainPolicy } from '../src/policy/explain-policy.js';
import { hostPatternProblem } from '../src/policy/host-pattern.js';
import { mergeLayers } from '../src/policy/merge-layers.js';
import { readPolicyFile } from '../src/policy/policy-layer.js';
import { resolvePolicy } from '../src/policy/resolve-policy.js';
import { defaultPolicy } from '../src/policy/default-policy.js';
import { PolicySchema } from '../src/policy/schema.js';
import { resolveCellPolicy } from '../src/run/run-policy.js';
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

/**
 * A repo's agentcell.toml is untrusted: a table or key named __proto__ (or constructor,
 * prototype) once passed validation (zod's records drop __proto__ unseen) and the merge
 * then wrote through it onto Object.prototype of agentcell's own process.
 */
describe('reserved names in policy keys', () => {
  const prototypeKeys = Object.getOwnPropertyNames(Object.prototype).sort();
  const cleanPrototype = (): void => {
    for (const key of Object.getOwnPropertyNames(Object.prototype))
      if (!prototypeKeys.includes(key)) delete (Object.prototype as Record<string, unknown>)[key];
  };
  const assertUnpolluted = (): void => {
    const polluted = ({} as Record<string, unknown>)['polluted'];
    const keys = Object.getOwnPropertyNames(Object.prototype).sort();
    cleanPrototype();
    assert.equal(polluted, undefined, 'Object.prototype.polluted was set');
    assert.deepEqual(keys, prototypeKeys, 'Object.prototype gained keys');
  };
  afterEach(cleanPrototype);

  const cases: [string, string, string][] = [
    ['[env.__proto__]', '[env.__proto__]\npolluted = "yes"\n', 'env.__proto__'],
    ['[secrets.__proto__]', '[secrets.__proto__]\npolluted = "yes"\n', 'secrets.__proto__'],
    [
      '[network.resolve.__proto__]',
      '[network.resolve.__proto__]\npolluted = "10.0.0.1"\n',
      'network.resolve.__proto__',
    ],
    ['[env] __proto__ = "x"', '[env]\n__proto__ = "x"\n', 'env.__proto__'],
    ['a dotted env.__proto__.polluted', 'env.__proto__.polluted = "yes"\n', 'env.__proto__'],
    ['a top-level [__proto__]', '[__proto__]\npolluted = "yes"\n', '__proto__'],
    ['[env] constructor = "x"', '[env]\nconstructor = "x"\n', 'env.constructor'],
    ['[env.constructor.prototype]', '[env.constructor.prototype]\npolluted = "yes"\n', 'env.constructor'],
    ['[secrets.constructor]', '[secrets.constructor]\nfrom = "env:X"\ninject = "env"\n', 'secrets.constructor'],
    ['[network.resolve] prototype', '[network.resolve]\nprototype = "10.0.0.1"\n', 'network.resolve.prototype'],
    [
      '[[network.rule]] with __proto__',
      '[[network.rule]]\nhost = "a.example.com"\n[network.rule.__proto__]\npolluted = "yes"\n',
      'network.rule.0.__proto__',
    ],
  ];
  const refusal = (file: string, key: string) => (e: unknown) =>
    e instanceof AgentcellError &&
    e.code === 'POLICY_INVALID' &&
    e.message.includes(file) &&
    e.message.includes(`key "${key}"`) &&
    /is not allowed as a name here/.test(e.message);

  for (const [name, text, key] of cases)
    it(`refuses ${name} in the repo's agentcell.toml, naming the file and key, and pollutes nothing`, async () => {
      sb = makeSandbox({ 'agentcell.toml': text });
      const file = join(sb.workspace, 'agentcell.toml');
      assert.throws(() => readPolicyFile(file), refusal(file, key));
      assertUnpolluted();
      await assert.rejects(() => resolveIn(sb), refusal(file, key));
      assertUnpolluted();
    });

  it('refuses them in the user config too, and on the command line (--env NAME=VALUE and --env NAME)', async () => {
    sb = makeSandbox();
    userConfig(sb, '[env.__proto__]\npolluted = "yes"\n');
    await assert.rejects(
      () => resolveIn(sb),
      refusal(join(sb.agentcellHome, 'config', 'config.toml'), 'env.__proto__'),
    );
    assertUnpolluted();
    sb.cleanup();
    sb = makeSandbox();
    const paths = agentcellPaths(sb.env);
    for (const [env, key] of [
      ['__proto__=x', 'env.__proto__'],
      ['constructor=x', 'env.constructor'],
      ['prototype', 'env.prototype'],
    ] as const)
      await assert.rejects(
        () => resolveCellPolicy({ workspace: sb.workspace, env: [env] }, paths, sb.workspace, { prototype: 'x' }),
        refusal('command line', key),
      );
    await assert.rejects(
      () => resolveIn(sb, { env: JSON.parse('{"__proto__": {"polluted": "yes"}}') as unknown }),
      refusal('command line', 'env.__proto__'),
    );
    assertUnpolluted();
  });

  it("refuses a secret's env variable named __proto__", async () => {
    sb = makeSandbox({ 'agentcell.toml': '[secrets.TOKEN]\nfrom = "env:TOKEN"\ninject = "env"\nenv = "__proto__"\n' });
    await assert.rejects(() => resolveIn(sb), /key "secrets\.TOKEN\.env": "__proto__" is not allowed as a name here/);
  });

  it('mergeLayers itself refuses them from a library caller and writes nothing onto Object.prototype', () => {
    for (const values of [
      JSON.parse('{"env": {"__proto__": {"polluted": "yes"}}}') as Record<string, unknown>,
      JSON.parse('{"__proto__": {"polluted": "yes"}}') as Record<string, unknown>,
      { network: { resolve: { constructor: { prototype: { polluted: 'yes' } } } } },
    ]) {
      assert.throws(
        () =>
          mergeLayers([
            { source: 'built-in', values: { env: { A: 'a' } } },
            { source: 'a caller', values },
          ]),
        (e: unknown) =>
          e instanceof AgentcellError && e.code === 'POLICY_INVALID' && /^a caller: key "/.test(e.message),
      );
      assertUnpolluted();
    }
    // Names Object.prototype has are ordinary keys, merged as own values, never into the inherited ones.
    const merged = mergeLayers([
      { source: 'a', values: { env: { toString: 'a', valueOf: 'v' } } },
      { source: 'b', values: { env: { toString: 'b' } } },
    ]);
    assert.deepEqual(merged.values, { env: { toString: 'b', valueOf: 'v' } });
    assertUnpolluted();
  });

  it('ordinary names still work (positive control)', async () => {
    sb = makeSandbox({
      'agentcell.toml':
        '[env]\nFOO = "bar"\n_proto = "p"\n[network.resolve]\n"api.example.com" = "10.0.0.1"\n[secrets.TOKEN]\nfrom = "env:TOKEN"\ninject = "env"\n',
    });
    const r = await resolveIn(sb, { env: { BAZ: 'q' } });
    assert.deepEqual(r.policy.env, { FOO: 'bar', _proto: 'p', BAZ: 'q' });
    assert.deepEqual(r.policy.network.resolve, { 'api.example.com': '10.0.0.1' });
    assert.deepEqual(Object.keys(r.policy.secrets), ['TOKEN']);
    assertUnpolluted();
  });
});

describe('reserved names through the command line', () => {
  for (const [text, key] of [
    ['[env.__proto__]\npolluted = "yes"\n', 'env.__proto__'],
    ['[secrets.__proto__]\npolluted = "yes"\n', 'secrets.__proto__'],
    ['[network.resolve.__proto__]\npolluted = "10.0.0.1"\n', 'network.resolve.__proto__'],
    ['[env]\n__proto__ = "x"\n', 'env.__proto__'],
    ['[env]\nconstructor = "x"\n', 'env.constructor'],
  ] as const)
    it(`run --dry-run and policy validate exit 2 with POLICY_INVALID for ${key}`, () => {
      sb = makeSandbox({ 'agentcell.toml': text });
      const file = join(sb.workspace, 'agentcell.toml');
      const r = agentcell(['run', '--dry-run', '--json', '--', 'touch', 'ran'], { cwd: sb.workspace, env: sb.env });
      assert.equal(r.status, 2, r.stderr);
      const body = JSON.parse(r.stdout) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'POLICY_INVALID');
      assert.ok(body.error.message.includes(`${file}: key "${key}": `), body.error.message);
      assert.match(body.error.message, /is not allowed as a name here/);
      const v = agentcell(['policy', 'validate'], { cwd: sb.workspace, env: sb.env });
      assert.equal(v.status, 2);
      assert.ok(v.stderr.includes(`key "${key}"`), v.stderr);
      assert.equal(existsSync(join(sb.workspace, 'ran')), false);
    });

  it('--env __proto__=x is refused, not silently dropped; an ordinary --env works', () => {
    sb = makeSandbox();
    const bad = agentcell(['policy', 'show', '--json', '--env', '__proto__=x'], { cwd: sb.workspace, env: sb.env });
    assert.equal(bad.status, 2);
    assert.equal((JSON.parse(bad.stdout) as { error: { code: string } }).error.code, 'POLICY_INVALID');
    const good = agentcell(['policy', 'show', '--json', '--env', 'FOO=x'], { cwd: sb.workspace, env: sb.env });
    assert.equal(good.status, 0, good.stderr);
    assert.equal((JSON.parse(good.stdout) as { policy: { env: Record<string, string> } }).policy.env['FOO'], 'x');
  });
});

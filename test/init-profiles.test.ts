import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { prepareRun } from '../src/run/prepare-run.js';
import { AgentcellError } from '../src/errors.js';
import { agentcellPaths } from '../src/paths.js';
import { DEFAULT_PROFILE, PROFILES, renderProfile, writeInitFile } from '../src/policy/init-profiles.js';
import { readPolicyFile } from '../src/policy/policy-layer.js';
import { policySchemaUrl } from '../src/policy/policy-json-schema.js';
import { PolicySchema } from '../src/policy/schema.js';
import { makeSandbox, type Sandbox } from './helpers.js';

let sb: Sandbox | undefined;
afterEach(() => {
  sb?.cleanup();
  sb = undefined;
});

function isCode(code: string): (error: unknown) => boolean {
  return (error) => error instanceof AgentcellError && error.code === code;
}

describe('agentcell init profiles', () => {
  it('offers strict, development, node and python, development by default', () => {
    assert.deepEqual([...PROFILES], ['strict', 'development', 'node', 'python']);
    assert.equal(DEFAULT_PROFILE, 'development');
  });

  for (const profile of PROFILES) {
    it(`profile ${profile} renders a policy file that validates and runs`, async () => {
      sb = makeSandbox();
      const result = writeInitFile(sb.workspace, { profile });
      assert.equal(result.written, true);
      assert.equal(result.profile, profile);
      // readPolicyFile throws POLICY_INVALID with file/key/expectation on any problem.
      const layer = readPolicyFile(result.path);
      const policy = PolicySchema.parse(layer.values);
      // Every table the schema knows is explained, in a comment or as a table.
      for (const section of [
        '[cell]',
        '[workspace]',
        '[[mount]]',
        '[network]',
        '[secrets.',
        '[resources]',
        '[agent]',
        '[env]',
      ])
        assert.ok(result.content.includes(section), `${profile} explains ${section}`);
      // The profile is usable today: a run can be planned with it (no "not available yet").
      const prepared = await prepareRun({
        argv: ['true'],
        tty: false,
        paths: agentcellPaths(sb.env),
        hostEnv: sb.env,
        cwd: sb.workspace,
      });
      assert.equal(prepared.resolved.policy.cell.mode, policy.cell.mode);
      assert.equal(prepared.resolved.policy.network.mode, 'none');
    });
  }

  it('strict is read-only and offline; development is an overlay (transactions on) and offline', () => {
    const strict = PolicySchema.parse(parseRendered('strict'));
    assert.equal(strict.cell.mode, 'strict');
    assert.equal(strict.workspace.mode, 'readonly');
    assert.equal(strict.network.mode, 'none');
    const dev = PolicySchema.parse(parseRendered('development'));
    assert.equal(dev.cell.mode, 'development');
    assert.equal(dev.workspace.mode, 'overlay');
    assert.equal(dev.network.mode, 'none');
    for (const profile of ['node', 'python'])
      assert.equal(PolicySchema.parse(parseRendered(profile)).workspace.mode, 'overlay', profile);
  });

  it('no profile promises what is not there or offers what a run refuses', () => {
    for (const profile of PROFILES) {
      const text = renderProfile(profile);
      assert.doesNotMatch(text, /arrive/, `${profile}: everything it describes is built`);
      assert.doesNotMatch(text, /"file"/, `${profile}: inject = "file" is refused by runs`);
      assert.match(text, /"overlay": changes stay in the cell until `agentcell accept`/);
    }
  });

  it('node and python show their registries, commented out, with how to switch them on', () => {
    const node = renderProfile('node');
    assert.match(node, /^# allow = \["registry\.npmjs\.org"\]$/m);
    assert.match(node, /set mode = "allowlist" above and uncomment/);
    const python = renderProfile('python');
    assert.match(python, /^# allow = \["pypi\.org", "files\.pythonhosted\.org"\]$/m);
    assert.match(python, /set mode = "allowlist" above and uncomment/);
    assert.ok(PolicySchema.parse(parseRendered('node')).workspace.hide.length > 0);
    assert.ok(PolicySchema.parse(parseRendered('python')).workspace.scan_skip.includes('.venv'));
  });

  it('their commented registry allowlists validate once switched on', () => {
    for (const [profile, hosts] of [
      ['node', ['registry.npmjs.org']],
      ['python', ['pypi.org', 'files.pythonhosted.org']],
    ] as const) {
      const text = renderProfile(profile)
        .replace(/^mode = "none"$/m, 'mode = "allowlist"')
        .replace(/^# (allow = \[.*\])$/m, '$1');
      sb?.cleanup();
      sb = makeSandbox();
      const path = join(sb.root, 'switched-on.toml');
      writeFileSync(path, text);
      const policy = PolicySchema.parse(readPolicyFile(path).values);
      assert.equal(policy.network.mode, 'allowlist');
      assert.deepEqual(policy.network.allow, [...hosts]);
    }
  });

  it('refuses an unknown profile with USAGE, listing the profiles', () => {
    assert.throws(
      () => renderProfile('rust'),
      (error: unknown) => {
        assert.ok(isCode('USAGE')(error));
        for (const p of PROFILES) assert.match((error as Error).message, new RegExp(p));
        return true;
      },
    );
    sb = makeSandbox();
    const box = sb;
    assert.throws(() => writeInitFile(box.workspace, { profile: 'rust' }), isCode('USAGE'));
    assert.deepEqual(readdirSync(box.workspace), []);
  });

  it('refuses to overwrite without --force, naming the path and --force', () => {
    sb = makeSandbox({ 'agentcell.toml': '# mine\n' });
    const box = sb;
    const path = join(box.workspace, 'agentcell.toml');
    assert.throws(
      () => writeInitFile(box.workspace, {}),
      (error: unknown) =>
        isCode('FILE_EXISTS')(error) &&
        (error as Error).message.includes(path) &&
        (error as Error).message.includes('--force'),
    );
    assert.throws(() => writeInitFile(box.workspace, { dryRun: true }), isCode('FILE_EXISTS'));
    assert.equal(readFileSync(path, 'utf8'), '# mine\n');
    assert.deepEqual(readdirSync(box.workspace), ['agentcell.toml'], 'no temp file left behind');

    const forced = writeInitFile(box.workspace, { force: true, profile: 'strict' });
    assert.equal(forced.written, true);
    assert.equal(readFileSync(path, 'utf8'), forced.content);
    assert.deepEqual(readdirSync(box.workspace), ['agentcell.toml']);
  });

  it('never writes through a symlink named agentcell.toml', () => {
    sb = makeSandbox();
    const box = sb;
    const elsewhere = join(box.root, 'elsewhere.toml');
    symlinkSync(elsewhere, join(box.workspace, 'agentcell.toml')); // dangling
    assert.throws(() => writeInitFile(box.workspace, {}), isCode('FILE_EXISTS'));
    assert.deepEqual(readdirSync(box.root).includes('elsewhere.toml'), false);
  });

  it('--dry-run renders the same content and writes nothing', () => {
    sb = makeSandbox();
    const box = sb;
    const dry = writeInitFile(box.workspace, { profile: 'node', dryRun: true });
    assert.equal(dry.written, false);
    assert.equal(dry.path, join(box.workspace, 'agentcell.toml'));
    assert.equal(dry.content, renderProfile('node', policySchemaUrl()));
    assert.deepEqual(readdirSync(box.workspace), []);
  });

  it('writes atomically: the file holds exactly the rendered profile and no temp file remains', () => {
    sb = makeSandbox();
    const box = sb;
    const result = writeInitFile(box.workspace, {});
    assert.equal(result.profile, 'development');
    assert.equal(result.content, renderProfile('development', policySchemaUrl()));
    assert.equal(readFileSync(result.path, 'utf8'), result.content);
    assert.deepEqual(readdirSync(box.workspace), ['agentcell.toml']);
  });

  it('refuses a workspace that is not a directory', () => {
    sb = makeSandbox();
    const box = sb;
    const file = join(box.root, 'plain-file');
    writeFileSync(file, '');
    assert.throws(() => writeInitFile(file, {}), isCode('WORKSPACE_INVALID'));
    assert.throws(() => writeInitFile(join(box.root, 'missing'), {}), isCode('WORKSPACE_INVALID'));
    mkdirSync(join(box.root, 'ok'));
    assert.equal(writeInitFile(join(box.root, 'ok'), { dryRun: true }).written, false);
  });
});

function parseRendered(profile: string): Record<string, unknown> {
  sb?.cleanup();
  sb = makeSandbox();
  const path = join(sb.root, `${profile}.toml`);
  writeFileSync(path, renderProfile(profile));
  return readPolicyFile(path).values;
}

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BUILT_IN_HIDE, scanSecrets } from '../src/workspace/secret-scan.js';
import { ac, acJson, makeSandbox } from './helpers.js';

describe('secret scan', () => {
  it('finds built-in and policy patterns at any depth, by name or by path, and honours expose and skip', () => {
    const sb = makeSandbox({
      '.env': 'x',
      '.env.local': 'x',
      '.envrc': 'x',
      'src/credentials.ts': 'source code, not masked',
      'src/app.ts': 'x',
      'src/certs/server.pem': 'x',
      'deploy/prod/values.yaml': 'x',
      'deploy/dev/values.yaml': 'x',
      'keys/id_ed25519.pub': 'x',
      '.aws/credentials': 'x',
      'node_modules/pkg/test.pem': 'x',
      'public.env.example': 'x',
      '.env.example': 'x',
    });
    try {
      const found = scanSecrets(sb.workspace, {
        hide: [...BUILT_IN_HIDE, 'deploy/prod/*.yaml'],
        expose: ['.env.example'],
        skip: ['node_modules'],
      });
      assert.deepEqual(found.masked.map((f) => `${f.relative}:${f.kind}`).sort(), [
        '.aws:dir',
        '.env.local:file',
        '.env:file',
        '.envrc:file',
        'deploy/prod/values.yaml:file',
        'keys/id_ed25519.pub:file',
        'src/certs/server.pem:file',
      ]);
    } finally {
      sb.cleanup();
    }
  });

  it('a cached scan re-reads only directories whose entries changed, and still finds new secrets', () => {
    const sb = makeSandbox({ 'a/b/c.ts': 'x', 'a/.env': 'x', 'd/e.ts': 'x' });
    try {
      const options = { hide: BUILT_IN_HIDE, expose: [], skip: [] };
      const first = scanSecrets(sb.workspace, options);
      assert.equal(first.changed, true);
      const again = scanSecrets(sb.workspace, options, first.cache);
      assert.equal(again.changed, false);
      assert.deepEqual(again.masked, first.masked);
      writeFileSync(join(sb.workspace, 'a/b/server.key'), 'x');
      mkdirSync(join(sb.workspace, 'd/new'));
      writeFileSync(join(sb.workspace, 'd/new/.npmrc'), 'x');
      const third = scanSecrets(sb.workspace, options, again.cache);
      assert.equal(third.changed, true);
      assert.deepEqual(third.masked.map((m) => m.relative).sort(), ['a/.env', 'a/b/server.key', 'd/new/.npmrc']);
      // Other patterns invalidate the whole cache.
      const exposed = scanSecrets(sb.workspace, { ...options, expose: ['.env'] }, third.cache);
      assert.deepEqual(exposed.masked.map((m) => m.relative).sort(), ['a/b/server.key', 'd/new/.npmrc']);
    } finally {
      sb.cleanup();
    }
  });

  it('masks the in-workspace target of a secret-named symlink and ignores links leaving the workspace', () => {
    const sb = makeSandbox({ 'config/real-secret.txt': 'x' });
    try {
      symlinkSync('config/real-secret.txt', join(sb.workspace, '.env'));
      symlinkSync('/etc/hostname', join(sb.workspace, 'host.key'));
      symlinkSync('missing', join(sb.workspace, 'dangling.pem'));
      mkdirSync(join(sb.workspace, 'sub'));
      writeFileSync(join(sb.workspace, 'sub', 'ok.txt'), 'x');
      const found = scanSecrets(sb.workspace, { hide: BUILT_IN_HIDE, expose: [], skip: [] });
      assert.deepEqual(
        found.masked.map((f) => [f.relative, f.path]),
        [['.env', join(sb.workspace, 'config/real-secret.txt')]],
      );
    } finally {
      sb.cleanup();
    }
  });
});

/** A file per credential class the built-in list must mask, at the depth a workspace that is a home puts it. */
const CREDENTIAL_FILES = [
  '.envrc',
  'infra/terraform.tfstate',
  'infra/terraform.tfstate.backup',
  'infra/prod.tfvars',
  'infra/prod.auto.tfvars.json',
  'credentials.json',
  'app/.credentials.json',
  'ops/credentials.csv',
  'ops/my-service-account-key.json',
  'ops/service-account.json',
  'ops/gha-creds-1234.json',
  '.pgpass',
  '.vault-token',
  '.yarnrc.yml',
  '.yarnrc',
  '.npmrc',
  '.pypirc',
  '.netrc',
  '.git-credentials',
  '.dockercfg',
  'web/.htpasswd',
  'deploy/secrets.yaml',
  'deploy/secrets.yml',
  'deploy/secrets.prod.yaml',
  'keys/deploy.ppk',
  'keys/store.p12',
  'keys/store.pfx',
  'keys/release.jks',
  'keys/android.keystore',
  'keys/secret.asc',
  'keys/github_ed25519',
  'keys/id_ecdsa_sk',
  'keys/AuthKey_ABC.p8',
  'kubeconfig',
  '.bash_history',
  '.claude.json',
];
/** Directories (masked whole) and files inside tool dirs of a home. */
const CREDENTIAL_NESTED = [
  '.cargo/credentials.toml',
  '.cargo/credentials',
  '.config/gh',
  '.config/gcloud',
  '.config/glab-cli',
  '.config/github-copilot',
  '.config/containers/auth.json',
  '.docker',
  '.kube',
  '.aws',
  '.azure',
  '.ssh',
  '.gnupg',
  '.m2/settings.xml',
  '.gradle/gradle.properties',
  '.gem/credentials',
  '.nuget/NuGet/NuGet.Config',
  '.config/pypoetry/auth.toml',
  '.codex/auth.json',
  '.gemini/oauth_creds.json',
  '.local/share/opencode/auth.json',
  '.claude/.credentials.json',
  'users/dev/.config/gh',
];
/** Look-alikes that are code or project config: never masked. */
const NOT_SECRETS = [
  'src/credentials.ts',
  'src/Credentials.java',
  'src/secrets.py',
  'src/gh/hosts.yml',
  '.config/other/hosts.yml',
  'gcloud/main.go',
  'nuget.config',
  'gradle.properties',
  'settings.xml',
  'src/env.ts',
  'src/auth.json',
  'README.md',
];

describe('secret scan: what it masks', () => {
  it('masks case variants of built-in names; user hide patterns ignore case; expose is exact', () => {
    const sb = makeSandbox({
      '.ENV': 'x',
      '.Env.Local': 'x',
      'keys/ID_RSA': 'x',
      'certs/Server.PEM': 'x',
      '.NPMRC': 'x',
      '.SSH/config': 'x',
      '.Config/GH/hosts.yml': 'x',
      'Deploy/Prod/values.yaml': 'x',
      'ok.txt': 'x',
    });
    try {
      const scan = (expose: string[]) =>
        scanSecrets(sb.workspace, { hide: [...BUILT_IN_HIDE, 'deploy/prod/*.yaml'], expose, skip: [] })
          .masked.map((m) => m.relative)
          .sort();
      assert.deepEqual(scan([]), [
        '.Config/GH',
        '.ENV',
        '.Env.Local',
        '.NPMRC',
        '.SSH',
        'Deploy/Prod/values.yaml',
        'certs/Server.PEM',
        'keys/ID_RSA',
      ]);
      // Exposing ".env" does not expose ".ENV": un-hiding is only what was named, exactly.
      assert.ok(scan(['.env', '.npmrc']).includes('.ENV'));
      assert.ok(!scan(['.ENV']).includes('.ENV'));
    } finally {
      sb.cleanup();
    }
  });

  it('masks each credential file class, in a repo and in a home, and leaves look-alikes alone', () => {
    const files: Record<string, string> = {};
    for (const path of [...CREDENTIAL_FILES, ...NOT_SECRETS]) files[path] = 'x';
    for (const path of CREDENTIAL_NESTED) files[`${path}/inner`] = 'x';
    const sb = makeSandbox(files);
    try {
      // The nested ones were made as dirs holding `inner`; a file class among them is a dir here, which masks the same.
      const masked = new Set(
        scanSecrets(sb.workspace, { hide: BUILT_IN_HIDE, expose: [], skip: [] }).masked.map((m) => m.relative),
      );
      for (const path of [...CREDENTIAL_FILES, ...CREDENTIAL_NESTED]) assert.ok(masked.has(path), `${path} not masked`);
      for (const path of NOT_SECRETS) assert.ok(!masked.has(path), `${path} masked`);
      assert.equal(masked.size, CREDENTIAL_FILES.length + CREDENTIAL_NESTED.length);
    } finally {
      sb.cleanup();
    }
  });

  it('masks a nested home tool file as a file, and leaves pruned dirs to the caller', () => {
    const sb = makeSandbox({
      '.config/gh/hosts.yml': 'x',
      '.cargo/credentials.toml': 'x',
      '.cargo/config.toml': 'x',
      'own/keys/receipts-ed25519.pem': 'x',
    });
    try {
      const found = scanSecrets(sb.workspace, { hide: BUILT_IN_HIDE, expose: [], skip: [], prune: ['own'] });
      assert.deepEqual(found.masked.map((m) => `${m.relative}:${m.kind}`).sort(), [
        '.cargo/credentials.toml:file',
        '.config/gh:dir',
      ]);
    } finally {
      sb.cleanup();
    }
  });
});

function git(cwd: string, ...args: string[]): void {
  execFileSync('git', ['-c', 'user.email=t@t', '-c', 'user.name=t', ...args], { cwd, stdio: 'pipe' });
}

describe('secret scan: secrets git tracks', () => {
  it('lists tracked and staged secret-named paths of the repo and of nested repos, not untracked or exposed ones', () => {
    const sb = makeSandbox({
      'README.md': 'x',
      '.env': 'x',
      'config/Server.KEY': 'x',
      '.aws/credentials': 'x',
      'test/fixtures/cert.pem': 'x',
      'untracked.pem': 'x',
      'staged/.npmrc': 'x',
      'vendor/lib/id_rsa': 'x',
      'vendor/lib/ok.txt': 'x',
    });
    try {
      const ws = sb.workspace;
      git(ws, 'init', '-q');
      git(ws, 'add', 'README.md', '.env', 'config/Server.KEY', '.aws/credentials', 'test/fixtures/cert.pem');
      git(ws, 'commit', '-qm', 'secrets');
      git(ws, 'add', 'staged/.npmrc');
      git(join(ws, 'vendor/lib'), 'init', '-q');
      git(join(ws, 'vendor/lib'), 'add', '.');
      const options = { hide: BUILT_IN_HIDE, expose: ['test/fixtures/*.pem'], skip: ['.git', 'node_modules'] };
      const first = scanSecrets(ws, options);
      assert.deepEqual(first.tracked, [
        '.aws/credentials',
        '.env',
        'config/Server.KEY',
        'staged/.npmrc',
        'vendor/lib/id_rsa',
      ]);
      assert.deepEqual(first.unchecked, []);
      // The index unchanged: the cached answer, no git run (and the cache says nothing changed).
      const again = scanSecrets(ws, options, first.cache);
      assert.equal(again.changed, false);
      assert.deepEqual(again.tracked, first.tracked);
      git(ws, 'rm', '-q', '--cached', '.env');
      const removed = scanSecrets(ws, options, again.cache);
      assert.equal(removed.changed, true);
      assert.ok(!removed.tracked.includes('.env'));
    } finally {
      sb.cleanup();
    }
  });

  it("lists the index without running the repo's fsmonitor or hooks", () => {
    const sb = makeSandbox({ '.env': 'x' });
    try {
      const ws = sb.workspace;
      git(ws, 'init', '-q');
      git(ws, 'add', '.env');
      const marker = join(sb.root, 'fsmonitor-ran');
      const hook = join(sb.root, 'fsmonitor.sh');
      writeFileSync(hook, `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
      git(ws, 'config', 'core.fsmonitor', hook);
      // Positive control: the host's own git does run it.
      execFileSync('git', ['status', '--porcelain'], { cwd: ws, stdio: 'pipe' });
      assert.equal(existsSync(marker), true, 'control: git status runs core.fsmonitor');
      rmSync(marker);
      const found = scanSecrets(ws, { hide: BUILT_IN_HIDE, expose: [], skip: ['.git'] });
      assert.deepEqual(found.tracked, ['.env']);
      assert.equal(existsSync(marker), false, 'the scan ran the repo fsmonitor');
    } finally {
      sb.cleanup();
    }
  });
});

describe('secret scan: a repo that commits a secret, through the CLI', () => {
  const CANARY = `tracked-canary-${process.pid}`;

  it('strict refuses it; development runs, labels it (banner, --json, dry run, receipt); expose lets strict run', () => {
    const sb = makeSandbox({ 'README.md': 'hi\n', '.ENV': `TOKEN=${CANARY}\n` });
    try {
      git(sb.workspace, 'init', '-q');
      git(sb.workspace, 'add', '.');
      git(sb.workspace, 'commit', '-qm', 'oops');
      const refused = ac(sb, 'run', '--json', '--', 'true');
      assert.equal(refused.status, 2);
      const error = (JSON.parse(refused.stdout) as { error: { code: string; message: string } }).error;
      assert.equal(error.code, 'MODE_REFUSED');
      assert.match(error.message, /\.ENV/);
      assert.match(error.message, /expose = \["\.ENV"\]/);

      const dry = acJson<{ assurance: { reasons: string[] }; trackedSecrets: string[] }>(
        sb,
        'run',
        '--mode',
        'development',
        '--dry-run',
        '--json',
        '--',
        'true',
      );
      assert.deepEqual(dry.trackedSecrets, ['.ENV']);
      assert.ok(dry.assurance.reasons.some((r) => /tracked by git.*\.ENV/.test(r)));

      // The label is true: the file is masked, its blob is not.
      const run = ac(sb, 'run', '--mode', 'development', '--', 'sh', '-c', 'cat .ENV; git cat-file -p HEAD:.ENV');
      assert.equal(run.status, 0, run.stderr);
      assert.match(
        run.stderr,
        /assurance reduced \(.*secret-named file\(s\) tracked by git, readable in the cell from \.git: \.ENV/,
      );
      assert.equal(run.stdout, `TOKEN=${CANARY}\n`, 'only git could read it');
      const receipt = acJson<{ assurance: { reasons: string[] } }>(
        sb,
        'receipt',
        'show',
        '--latest',
        '--format',
        'json',
      );
      assert.ok(receipt.assurance.reasons.some((r) => /tracked by git.*\.ENV/.test(r)));

      writeFileSync(join(sb.workspace, 'agentcell.toml'), '[workspace]\nexpose = [".ENV"]\n');
      const exposed = ac(sb, 'run', '--json', '--', 'cat', '.ENV');
      assert.equal(exposed.status, 0, exposed.stderr);
      assert.match(exposed.stdout, new RegExp(CANARY));
    } finally {
      sb.cleanup();
    }
  });
});

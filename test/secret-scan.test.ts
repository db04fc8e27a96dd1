import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { writeJsonCache } from '../src/_internal/write-json-cache.js';
import { BUILT_IN_HIDE, readScanCache, scanSecrets } from '../src/workspace/secret-scan.js';
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
      // Settled, the directories' stamps hold and the repositories come from the cache
      // as saved: their indexes are still checked, and a new one listed again.
      const later = { ...options, now: Date.now() + 60_000 };
      const settled = scanSecrets(ws, later, removed.cache);
      const reused = scanSecrets(ws, later, settled.cache);
      assert.equal(reused.changed, false);
      assert.deepEqual(reused.tracked, settled.tracked);
      assert.ok(reused.tracked.includes('vendor/lib/id_rsa'), 'the nested repo too');
      git(ws, 'add', '.env');
      const readded = scanSecrets(ws, later, reused.cache);
      assert.equal(readded.changed, true);
      assert.ok(readded.tracked.includes('.env'));
      assert.deepEqual(scanSecrets(ws, later, readded.cache).tracked, readded.tracked);
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

describe('secret scan cache: what a directory changed since the last scan', () => {
  const options = { hide: BUILT_IN_HIDE, expose: [], skip: [] };
  /** A scan this far in the future counts every directory made now as settled, so the cache is trusted. */
  const later = (): number => Date.now() + 60_000;
  const mtimeNs = (path: string): bigint => statSync(path, { bigint: true }).mtimeNs;
  /** Runs `change`, then puts `dirs`' mtimes back exactly (ns) as they were, as `touch -r` / `cp -p` / `rsync -a` can. */
  const keepingMtimes = (dirs: string[], change: () => void): void => {
    const refs = mkdtempSync(join(tmpdir(), 'agentcell-mtimes-')); // outside the workspace: changes nothing in it
    const saved = dirs.map((d, i) => {
      const ref = join(refs, String(i));
      execFileSync('touch', ['-r', d, ref]);
      return { d, ref, before: mtimeNs(d) };
    });
    change();
    for (const { d, ref, before } of saved) {
      execFileSync('touch', ['-r', ref, d]);
      // Positive control: a cache keyed on mtime alone would see nothing here.
      assert.equal(mtimeNs(d), before, `${d}: mtime put back`);
    }
    rmSync(refs, { recursive: true });
  };
  const sh = (script: string, cwd: string): void => {
    execFileSync('sh', ['-c', script], { cwd });
  };
  /** Each cached directory's stamp: the field after the one that names the directory. */
  const stamps = (dirs: string): string[] =>
    dirs.split('\0').flatMap((field, i, all) => (field.startsWith('/') ? [all[i + 1] ?? ''] : []));

  it('an unchanged, settled tree is reused as is; a tree changed just now is read again next time', () => {
    const sb = makeSandbox({ 'a/b/c.ts': 'x', 'a/.env': 'x', 'd/e.ts': 'x' });
    try {
      const first = scanSecrets(sb.workspace, { ...options, now: later() });
      const again = scanSecrets(sb.workspace, { ...options, now: later() }, first.cache);
      assert.equal(again.changed, false);
      assert.equal(again.cache, first.cache, 'unchanged: the same cache');
      assert.deepEqual(again.masked, first.masked);
      assert.ok(
        stamps(first.cache.dirs).every((stamp) => stamp !== ''),
        'settled dirs carry a stamp',
      );
      // Now rather than later: every directory was made within the racy window, so none is trusted next time.
      const fresh = scanSecrets(sb.workspace, options);
      assert.ok(
        stamps(fresh.cache.dirs).every((stamp) => stamp === ''),
        'unsettled dirs carry no stamp',
      );
    } finally {
      sb.cleanup();
    }
  });

  it('never misses a secret added, renamed in or moved in behind an mtime put back, at any depth', () => {
    const sb = makeSandbox({
      'notes.txt': 'x',
      'src/app.ts': 'x',
      'src/lib/util.ts': 'x',
      'deep/a/b/keep.ts': 'x',
      'conf/app.json': 'x',
      'lib/index.ts': 'x',
    });
    const outside = join(sb.root, 'outside');
    try {
      const ws = sb.workspace;
      const at = (rel: string): string => join(ws, rel);
      const cache = scanSecrets(ws, { ...options, now: later() }).cache;
      assert.deepEqual(scanSecrets(ws, { ...options, now: later() }, cache).masked, [], 'no secrets yet');

      // A new .env at the root, the root's mtime put back.
      keepingMtimes([ws], () => writeFileSync(at('.env'), 'x'));
      // A private key in a nested directory, with `touch -d` on the directory afterwards.
      writeFileSync(at('src/lib/id_rsa'), 'x');
      sh('touch -d "2001-01-01 00:00:00" src/lib', ws);
      // A new .aws/credentials inside an existing directory, its mtime put back.
      keepingMtimes([at('conf')], () => {
        mkdirSync(at('conf/.aws'));
        writeFileSync(at('conf/.aws/credentials'), 'x');
      });
      // A file renamed to a secret name in place.
      keepingMtimes([ws], () => renameSync(at('notes.txt'), at('server.key')));
      // A secret in a new deep directory: only `deep/a/b` changed, and its mtime is put back.
      keepingMtimes([at('deep/a/b')], () => {
        mkdirSync(at('deep/a/b/c/d/e'), { recursive: true });
        writeFileSync(at('deep/a/b/c/d/e/.npmrc'), 'x');
      });
      // A directory replaced by a copy with the same mtime (cp -a) that holds a secret.
      keepingMtimes([ws], () => {
        sh('cp -a lib lib.new && echo x > lib.new/.env && touch -r lib lib.new && rm -rf lib && mv lib.new lib', ws);
      });
      // A directory with secrets moved in from outside the workspace (mv keeps its own mtime).
      mkdirSync(join(outside, 'vault'), { recursive: true });
      writeFileSync(join(outside, 'vault', 'prod.pem'), 'x');
      sh('touch -d "2001-01-01 00:00:00" vault', outside);
      keepingMtimes([at('src')], () => renameSync(join(outside, 'vault'), at('src/vault')));

      const found = scanSecrets(ws, { ...options, now: later() }, cache);
      assert.equal(found.changed, true);
      assert.deepEqual(found.masked.map((m) => m.relative).sort(), [
        '.env',
        'conf/.aws',
        'deep/a/b/c/d/e/.npmrc',
        'lib/.env',
        'server.key',
        'src/lib/id_rsa',
        'src/vault/prod.pem',
      ]);
      // The same as a scan without a cache.
      assert.deepEqual(
        found.masked.map((m) => m.relative).sort(),
        scanSecrets(ws, options)
          .masked.map((m) => m.relative)
          .sort(),
      );
    } finally {
      sb.cleanup();
    }
  });

  it('finds one change deep in an otherwise unchanged, settled tree (the flat check of the stamps stops at it)', () => {
    // Each change alone, from a fresh cache: the last directory in the walk's order, or one deep inside.
    const changes: Record<string, { change: (ws: string) => void; masked: string[] }> = {
      'a secret in the last directory, its mtime put back': {
        change: (ws) => keepingMtimes([join(ws, 'z/y/x')], () => writeFileSync(join(ws, 'z/y/x/.env'), 'x')),
        masked: ['z/y/x/.env'],
      },
      'a deep directory replaced by a secret-named one': {
        change: (ws) =>
          keepingMtimes([join(ws, 'm/n')], () => {
            rmSync(join(ws, 'm/n/o'), { recursive: true });
            mkdirSync(join(ws, 'm/n/o.key'));
          }),
        masked: ['m/n/o.key'],
      },
      'a deep directory moved under another name (a secret one)': {
        change: (ws) => keepingMtimes([join(ws, 'm/n')], () => renameSync(join(ws, 'm/n/o'), join(ws, 'm/n/.aws'))),
        masked: ['m/n/.aws'],
      },
    };
    for (const [what, { change, masked }] of Object.entries(changes)) {
      const sb = makeSandbox({ 'a/b/c.ts': 'x', 'm/n/o/p.ts': 'x', 'z/y/x/w.ts': 'x' });
      try {
        const ws = sb.workspace;
        const first = scanSecrets(ws, { ...options, now: later() });
        assert.deepEqual(first.masked, [], `${what}: no secrets yet`);
        const unchanged = scanSecrets(ws, { ...options, now: later() }, first.cache);
        assert.equal(unchanged.cache, first.cache, `${what}: positive control, the cache holds before the change`);
        change(ws);
        const found = scanSecrets(ws, { ...options, now: later() }, first.cache);
        assert.equal(found.changed, true, what);
        assert.deepEqual(
          found.masked.map((m) => m.relative),
          masked,
          what,
        );
      } finally {
        sb.cleanup();
      }
    }
  });

  it('keeps directories named like object keys (__proto__, constructor) through a saved cache', () => {
    const sb = makeSandbox({
      '__proto__/.env': 'x',
      '__proto__/src/id_rsa': 'x',
      'constructor/.npmrc': 'x',
      'hasOwnProperty/a.ts': 'x',
      'src/__proto__': 'x',
    });
    try {
      const ws = sb.workspace;
      const file = join(sb.root, 'scan-cache.json');
      const expected = ['__proto__/.env', '__proto__/src/id_rsa', 'constructor/.npmrc'];
      for (let round = 0; round < 3; round++) {
        // As a run does: the cache read back from its file, through its schema.
        const scan = scanSecrets(ws, { ...options, now: later() }, readScanCache(file));
        assert.deepEqual(scan.masked.map((m) => m.relative).sort(), expected, `round ${round}`);
        if (round === 0) assert.equal(scan.changed, true);
        else assert.equal(scan.changed, false, `round ${round}: the saved cache is reused whole`);
        if (scan.changed) writeJsonCache(file, scan.cache);
      }
    } finally {
      sb.cleanup();
    }
  });

  it('resolves a secret-named symlink at every scan: a link further along can change without its directory', () => {
    const sb = makeSandbox({ 'cfg/v1/settings.txt': 'x', 'cfg/v2/settings.txt': 'x' });
    try {
      const ws = sb.workspace;
      symlinkSync('v1', join(ws, 'cfg/current'));
      symlinkSync('cfg/current/settings.txt', join(ws, '.env'));
      const first = scanSecrets(ws, { ...options, now: later() });
      assert.deepEqual(
        first.masked.map((m) => m.path),
        [join(ws, 'cfg/v1/settings.txt')],
      );
      // `cfg/current` now points at v2; `cfg`'s mtime is put back, the workspace root is untouched.
      keepingMtimes([join(ws, 'cfg')], () => {
        unlinkSync(join(ws, 'cfg/current'));
        symlinkSync('v2', join(ws, 'cfg/current'));
      });
      const second = scanSecrets(ws, { ...options, now: later() }, first.cache);
      assert.deepEqual(
        second.masked.map((m) => m.path),
        [join(ws, 'cfg/v2/settings.txt')],
      );
    } finally {
      sb.cleanup();
    }
  });
});

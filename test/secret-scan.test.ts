import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BUILT_IN_HIDE, scanSecrets } from '../src/workspace/secret-scan.js';
import { makeSandbox } from './helpers.js';

describe('secret scan', () => {
  it('finds built-in and policy patterns at any depth, by name or by path, and honours expose and skip', () => {
    const sb = makeSandbox({
      '.env': 'x',
      '.env.local': 'x',
      '.envrc': 'not a secret by name',
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
    const sb = makeSandbox({ 'config/real-credentials.txt': 'x' });
    try {
      symlinkSync('config/real-credentials.txt', join(sb.workspace, '.env'));
      symlinkSync('/etc/hostname', join(sb.workspace, 'host.key'));
      symlinkSync('missing', join(sb.workspace, 'dangling.pem'));
      mkdirSync(join(sb.workspace, 'sub'));
      writeFileSync(join(sb.workspace, 'sub', 'ok.txt'), 'x');
      const found = scanSecrets(sb.workspace, { hide: BUILT_IN_HIDE, expose: [], skip: [] });
      assert.deepEqual(
        found.masked.map((f) => [f.relative, f.path]),
        [['.env', join(sb.workspace, 'config/real-credentials.txt')]],
      );
    } finally {
      sb.cleanup();
    }
  });
});

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
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
import { RACY_MS } from '../src/workspace/secret-scan.js';
import { agentcell, makeSandbox, type Sandbox } from './helpers.js';
import { backendArgs, prepareBackend, TEST_BACKENDS } from './backends-under-test.js';

/**
 * The secret scan's cache (src/workspace/secret-scan.ts) attacked through real cells: after
 * a run has cached the workspace's directories, secrets appear behind it with every
 * directory's mtime put back as it was, and the next run's cell must still not read them.
 * Each probe has a positive control: the same probe, the names exposed, reads every one.
 */

const CANARY = `canary-${process.pid}-${Date.now()}`;

/** Waits until every directory changed so far is older than the scan's racy window: only its stamp can tell. */
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, RACY_MS + 300));

const mtimeNs = (path: string): bigint => statSync(path, { bigint: true }).mtimeNs;

/** Runs `change`, then puts `dirs`' mtimes back exactly (ns), as `touch -r` / `cp -p` / `rsync -a` can. */
function keepingMtimes(dirs: string[], change: () => void): void {
  const refs = mkdtempSync(join(tmpdir(), 'agentcell-mtimes-'));
  const saved = dirs.map((d, i) => {
    const ref = join(refs, String(i));
    execFileSync('touch', ['-r', d, ref]);
    return { d, ref, before: mtimeNs(d) };
  });
  change();
  for (const { d, ref, before } of saved) {
    execFileSync('touch', ['-r', ref, d]);
    assert.equal(mtimeNs(d), before, `${d}: mtime put back (a cache keyed on mtime alone would see nothing)`);
  }
  rmSync(refs, { recursive: true });
}

/** Where each planted secret is read from in the cell, and what it holds. */
const PLANTED = {
  '.env': `${CANARY}-root-env`,
  'src/lib/id_rsa': `${CANARY}-id-rsa`,
  'conf/.aws/credentials': `${CANARY}-aws`,
  'server.key': `${CANARY}-renamed`,
  'deep/a/b/c/d/e/.npmrc': `${CANARY}-deep`,
  'lib/.env': `${CANARY}-replaced-dir`,
  'src/vault/prod.pem': `${CANARY}-moved-in`,
  'link.env': `${CANARY}-retargeted`,
  'cfg/v2/settings.txt': `${CANARY}-retargeted`,
};
const PROBE = `for f in ${Object.keys(PLANTED).join(' ')}; do cat "$f" 2>/dev/null; echo; done; echo end`;

function plant(sb: Sandbox): void {
  const ws = sb.workspace;
  const at = (rel: string): string => join(ws, rel);
  // A new .env at the root.
  keepingMtimes([ws], () => writeFileSync(at('.env'), PLANTED['.env']));
  // A private key in a nested directory, `touch -d` on the directory afterwards.
  writeFileSync(at('src/lib/id_rsa'), PLANTED['src/lib/id_rsa']);
  execFileSync('touch', ['-d', '2001-01-01 00:00:00', at('src/lib')]);
  // A nested .aws/credentials in an existing directory.
  keepingMtimes([at('conf')], () => {
    mkdirSync(at('conf/.aws'));
    writeFileSync(at('conf/.aws/credentials'), PLANTED['conf/.aws/credentials']);
  });
  // A file renamed to a secret name (notes.txt holds the canary already).
  keepingMtimes([ws], () => renameSync(at('notes.txt'), at('server.key')));
  // A secret in a new deep directory.
  keepingMtimes([at('deep/a/b')], () => {
    mkdirSync(at('deep/a/b/c/d/e'), { recursive: true });
    writeFileSync(at('deep/a/b/c/d/e/.npmrc'), PLANTED['deep/a/b/c/d/e/.npmrc']);
  });
  // A directory replaced by a same-mtime copy (cp -a) that holds a secret.
  writeFileSync(join(sb.root, 'replaced-env'), PLANTED['lib/.env']);
  keepingMtimes([ws], () => {
    execFileSync(
      'sh',
      [
        '-c',
        `cp -a lib lib.new && cp ${join(sb.root, 'replaced-env')} lib.new/.env && touch -r lib lib.new && rm -rf lib && mv lib.new lib`,
      ],
      { cwd: ws },
    );
  });
  // A directory of secrets moved in from outside the workspace (mv keeps its mtime).
  const vault = join(sb.root, 'vault');
  mkdirSync(vault);
  writeFileSync(join(vault, 'prod.pem'), PLANTED['src/vault/prod.pem']);
  keepingMtimes([at('src')], () => renameSync(vault, at('src/vault')));
  // A secret-named link whose target moves through a link further along: only `cfg` changes.
  writeFileSync(at('cfg/v2/settings.txt'), PLANTED['cfg/v2/settings.txt']); // before settling: v2 is old news
}

for (const backend of TEST_BACKENDS) {
  describe(`secret scan cache on ${backend}`, () => {
    it('secrets planted behind a cached scan, every mtime put back, stay unreadable in the cell; exposed, the probe reads them', async () => {
      prepareBackend(backend);
      const sb = makeSandbox({
        'README.md': 'hello\n',
        'notes.txt': PLANTED['server.key'],
        'src/lib/util.ts': 'x',
        'conf/app.json': 'x',
        'deep/a/b/keep.ts': 'x',
        'lib/index.ts': 'x',
        'cfg/v1/settings.txt': 'not a secret\n',
      });
      const run = (script: string): { status: number | null; stdout: string; stderr: string } =>
        agentcell(['run', ...backendArgs(backend), '--', 'sh', '-c', script], { cwd: sb.workspace, env: sb.env });
      try {
        symlinkSync('v1', join(sb.workspace, 'cfg/current'));
        symlinkSync('cfg/current/settings.txt', join(sb.workspace, 'link.env'));
        mkdirSync(join(sb.workspace, 'cfg/v2'));
        writeFileSync(join(sb.workspace, 'cfg/v2/settings.txt'), 'placeholder\n');
        await settle();
        const first = run(`${PROBE}; cat README.md`);
        assert.equal(first.status, 0, first.stderr);
        assert.ok(first.stdout.includes('hello'), 'positive control: the probe reads what is there');
        assert.ok(!first.stdout.includes(CANARY), 'nothing planted yet but notes.txt, which is not read');
        // The cache is live: the run saved every directory with a stamp, so the next run reuses them.
        const cacheDir = join(sb.agentcellHome, 'state', 'scan-cache');
        const [cacheFile] = readdirSync(cacheDir);
        const cached = JSON.parse(readFileSync(join(cacheDir, cacheFile!), 'utf8')) as { dirs: string };
        // Each directory's stamp is the field after the one that names it (`/` and its path).
        const fields = cached.dirs.split('\0');
        const stamps = fields.flatMap((field, i) => (field.startsWith('/') ? [fields[i + 1] ?? ''] : []));
        assert.ok(stamps.length >= 10 && stamps.every((stamp) => stamp !== ''), 'stamped dirs');

        plant(sb);
        keepingMtimes([join(sb.workspace, 'cfg')], () => {
          unlinkSync(join(sb.workspace, 'cfg/current'));
          symlinkSync('v2', join(sb.workspace, 'cfg/current'));
        });
        await settle();
        const probed = run(PROBE);
        assert.equal(probed.status, 0, probed.stderr);
        assert.match(probed.stdout, /end\n$/);
        assert.ok(!probed.stdout.includes(CANARY), `a planted secret was readable:\n${probed.stdout}`);
        for (const [rel, content] of Object.entries(PLANTED))
          assert.equal(readFileSync(join(sb.workspace, rel), 'utf8'), content, `${rel} left intact on the host`);

        // Positive control: the same probe, the names exposed, reads every planted secret.
        writeFileSync(
          join(sb.workspace, 'agentcell.toml'),
          '[workspace]\nexpose = [".env", "id_rsa", ".aws", "credentials", "server.key", ".npmrc", "prod.pem", "link.env"]\n',
        );
        const exposed = run(PROBE);
        assert.equal(exposed.status, 0, exposed.stderr);
        for (const content of new Set(Object.values(PLANTED)))
          assert.ok(exposed.stdout.includes(content), `exposed, the probe reads ${content}:\n${exposed.stdout}`);
      } finally {
        sb.cleanup();
      }
    });
  });
}

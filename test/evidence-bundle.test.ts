import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ac, acJson, agentcell, cellDirOf, makeSandbox, waitFor, type Sandbox } from './helpers.js';

/**
 * Evidence bundles (src/evidence/evidence-bundle.ts): export → verify on a machine with
 * no agentcell state (an empty AGENTCELL_HOME, only the public key), and every kind of
 * tampering named: a byte flipped in a member, a header, the manifest, the padding, the
 * end; a receipt changed in the cell before export; the chain's end cut off.
 */

interface Verification {
  ok: boolean;
  failure?: { file: string; problem: string };
  key: { source: string; keyId: string } | null;
  receipts: number;
}

/** Each member's header offset, data offset and size, walking the tar's 512-byte blocks. */
function tarLayout(archive: Buffer): { name: string; header: number; data: number; size: number }[] {
  const out: { name: string; header: number; data: number; size: number }[] = [];
  let offset = 0;
  while (offset + 512 <= archive.length && !archive.subarray(offset, offset + 512).every((b) => b === 0)) {
    const name = archive.toString('utf8', offset, offset + 100).replace(/\0.*$/s, '');
    const size = Number.parseInt(archive.toString('latin1', offset + 124, offset + 136).replace(/\0.*$/s, ''), 8);
    out.push({ name, header: offset, data: offset + 512, size });
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

describe('evidence bundles', () => {
  let sb: Sandbox;
  let dir: string;
  let bundle: string;
  let publicKey: string;
  let empty: NodeJS.ProcessEnv;

  const verify = (file: string, ...args: string[]): Verification => {
    const r = agentcell(['evidence', 'verify', file, '--json', ...args], { cwd: dir, env: empty });
    assert.ok(r.status === 0 || r.status === 1, r.stderr);
    return JSON.parse(r.stdout) as Verification;
  };

  before(() => {
    sb = makeSandbox({ 'README.md': 'hello\n', '.env': 'TOKEN=x\n' });
    dir = mkdtempSync(join(tmpdir(), 'agentcell-evidence-'));
    // A reviewer's machine: no agentcell state at all, only the bundle and the public key.
    empty = { ...sb.env, AGENTCELL_HOME: join(dir, 'empty-home'), HOME: join(dir, 'reviewer') };
    for (const script of ['echo one > one.txt', 'echo two >> README.md; rm -f gone.txt'])
      assert.equal(ac(sb, 'run', '--', 'sh', '-c', script).status, 0);
    bundle = join(dir, 'cell.tar');
    const cell = readdirSync(join(sb.agentcellHome, 'state', 'cells'))[0]!;
    const exported = ac(sb, 'evidence', 'export', '--cell', cell, '-o', bundle);
    assert.equal(exported.status, 0, exported.stderr);
    publicKey = join(dir, 'receipts.pub');
    writeFileSync(publicKey, readFileSync(join(sb.agentcellHome, 'config', 'keys', 'receipts-ed25519.pub')));
  });
  after(() => {
    sb.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('export → verify passes with only the bundle and the public key', () => {
    const v = verify(bundle, '--key', publicKey);
    assert.deepEqual(v, { ok: true, key: { source: 'given', keyId: v.key?.keyId }, receipts: 2 });
    assert.equal(verify(bundle).key?.source, 'bundle', 'without --key it says whose key it trusted');
    const names = tarLayout(readFileSync(bundle)).map((m) => m.name);
    assert.equal(names[0], 'manifest.json');
    for (const member of [
      'public-key.pem',
      'anchor.json',
      'patch.diff',
      'policy.json',
      'fingerprint.json',
      'enforcement.json',
    ])
      assert.ok(names.includes(member), `${member} in ${names.join(', ')}`);
    assert.equal(names.filter((n) => n.startsWith('receipts/')).length, 2);
  });

  it('a key other than the signer’s fails verify', () => {
    const other = agentcell(['run', '--', 'true'], {
      cwd: sb.workspace,
      env: { ...sb.env, AGENTCELL_HOME: join(dir, 'other') },
    });
    assert.equal(other.status, 0, other.stderr);
    const v = verify(bundle, '--key', join(dir, 'other', 'config', 'keys', 'receipts-ed25519.pub'));
    assert.equal(v.ok, false);
    assert.equal(v.failure?.file, 'manifest.json');
    assert.match(v.failure?.problem ?? '', /signed by key/);
  });

  it('inspect says what ran, what changed and that it verified; home paths are redacted', () => {
    const r = agentcell(['evidence', 'inspect', bundle, '--key', publicKey, '--json'], { cwd: dir, env: empty });
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout) as {
      verified: { ok: boolean };
      runs: { command: string[]; enforcement: { through: string[] } | null }[];
      changedFiles: string[];
    };
    assert.equal(s.verified.ok, true);
    assert.deepEqual(
      s.runs.map((x) => x.command.at(-1)),
      ['echo one > one.txt', 'echo two >> README.md; rm -f gone.txt'],
    );
    assert.deepEqual(
      s.runs.map((x) => x.enforcement?.through),
      [[], []],
    );
    assert.deepEqual(s.changedFiles.sort(), ['README.md', 'one.txt']);
    const archive = readFileSync(bundle);
    for (const m of tarLayout(archive).filter((x) => !x.name.startsWith('receipts/')))
      assert.equal(
        archive.toString('utf8', m.data, m.data + m.size).includes(sb.home),
        false,
        `${m.name} names the home`,
      );
    const text = agentcell(['evidence', 'inspect', bundle], { cwd: dir, env: empty });
    assert.match(text.stdout, /what ran:[\s\S]*echo one > one\.txt[\s\S]*what changed .*README\.md/);
  });

  it('one byte flipped anywhere fails verify, naming where', () => {
    const archive = readFileSync(bundle);
    const layout = tarLayout(archive);
    const receipt = layout.find((m) => m.name.startsWith('receipts/'))!;
    const patch = layout.find((m) => m.name === 'patch.diff')!;
    const manifest = layout.find((m) => m.name === 'manifest.json')!;
    const last = layout.at(-1)!;
    const cases: { what: string; offset: number; file: RegExp }[] = [
      { what: 'inside a receipt', offset: receipt.data + 40, file: new RegExp(receipt.name) },
      { what: 'inside the patch', offset: patch.data + 3, file: /patch\.diff/ },
      { what: 'in the manifest', offset: manifest.data + 30, file: /manifest\.json/ },
      { what: "in a header's name", offset: patch.header + 2, file: /./ },
      { what: "in a header's size", offset: receipt.header + 130, file: new RegExp(receipt.name) },
      { what: "in a header's mtime", offset: patch.header + 140, file: /patch\.diff/ },
      {
        what: 'in the padding after a member',
        offset: receipt.data + receipt.size + 1,
        file: new RegExp(receipt.name),
      },
      {
        what: 'in the end-of-archive blocks',
        offset: last.data + Math.ceil(last.size / 512) * 512 + 700,
        file: /archive/,
      },
    ];
    for (const c of cases) {
      const flipped = Buffer.from(archive);
      flipped[c.offset] = flipped[c.offset]! ^ 0x01;
      const file = join(dir, 'flipped.tar');
      writeFileSync(file, flipped);
      const v = verify(file, '--key', publicKey);
      assert.equal(v.ok, false, `${c.what}: verify must fail`);
      assert.match(`${v.failure?.file}: ${v.failure?.problem}`, c.file, `${c.what}: ${JSON.stringify(v.failure)}`);
    }
  });

  it('a receipt changed in the cell before export fails verify, naming that receipt', () => {
    const receipts = join(cellDirOf(sb), 'receipts');
    const first = readdirSync(receipts).sort()[0]!;
    const original = readFileSync(join(receipts, first), 'utf8');
    try {
      writeFileSync(join(receipts, first), original.replace('"exitCode": 0', '"exitCode": 1'));
      const file = join(dir, 'changed.tar');
      assert.equal(
        ac(sb, 'evidence', 'export', '--cell', readdirSync(join(sb.agentcellHome, 'state', 'cells'))[0]!, '-o', file)
          .status,
        0,
      );
      const v = verify(file, '--key', publicKey);
      assert.equal(v.ok, false);
      assert.equal(v.failure?.file, `receipts/${first}`);
      assert.match(v.failure?.problem ?? '', /signature/);
    } finally {
      writeFileSync(join(receipts, first), original);
    }
  });

  it('the chain cut short (its newest receipt deleted) shows through the anchor', () => {
    const receipts = join(cellDirOf(sb), 'receipts');
    const newest = readdirSync(receipts).sort().at(-1)!;
    rmSync(join(receipts, newest));
    const file = join(dir, 'truncated.tar');
    const cell = readdirSync(join(sb.agentcellHome, 'state', 'cells'))[0]!;
    const r = acJson<{ members: { path: string }[] }>(sb, 'evidence', 'export', '--cell', cell, '-o', file, '--json');
    assert.equal(r.members.filter((m) => m.path.startsWith('receipts/')).length, 1);
    const v = verify(file, '--key', publicKey);
    assert.equal(v.ok, false);
    assert.equal(v.failure?.file, 'anchor.json');
    assert.match(v.failure?.problem ?? '', /receipt 2 missing/);
  });
});

describe('evidence bundles of a session', () => {
  it('export --session carries its transcript; verify checks the raw one against the run receipt’s sha256', async () => {
    const sb = makeSandbox({ 'README.md': 'hello\n' });
    const dir = mkdtempSync(join(tmpdir(), 'agentcell-evidence-session-'));
    try {
      const env = { ...sb.env, AGENTCELL_HOME: join(dir, 'empty-home'), HOME: join(dir, 'reviewer') };
      const started = acJson<{ id: string }>(
        sb,
        ...['session', 'start', '--json', '--', 'sh', '-c'],
        'printf "\\033[31mhi-from-session\\033[0m\\n"; sleep 1',
      );
      const show = (): { state: string; receipt: string | null } =>
        acJson<{ state: string; receipt: string | null }>(sb, 'session', 'show', started.id, '--json');
      await waitFor('the session ended with a receipt', () => show().receipt !== null, 60_000);
      assert.equal(show().state, 'exited');
      const bundle = join(dir, 'session.tar');
      const exported = ac(sb, 'evidence', 'export', '--session', started.id, '-o', bundle);
      assert.equal(exported.status, 0, exported.stderr);
      const archive = readFileSync(bundle);
      const member = (name: string): string => {
        const m = tarLayout(archive).find((e) => e.name === name);
        assert.ok(m, `${name} in the bundle`);
        return archive.toString('utf8', m.data, m.data + m.size);
      };
      assert.match(member('transcript.txt'), /^hi-from-session$/m);
      assert.ok(!member('transcript.txt').includes('\u001b'), 'the text one is ANSI-free');
      assert.ok(member('transcript.raw').includes('\u001b[31mhi-from-session'), 'the raw one is as printed');
      const manifest = JSON.parse(member('manifest.json')) as { subject: { run: string; session: string } };
      assert.equal(manifest.subject.session, started.id);
      assert.equal(manifest.subject.run, show().receipt);
      const ok = agentcell(['evidence', 'verify', bundle, '--json'], { cwd: dir, env });
      assert.equal(ok.status, 0, ok.stdout + ok.stderr);

      // The stored transcript edited before export: the bundle is well signed, but not what the run signed.
      const sessionDir = join(cellDirOf(sb), 'sessions', started.id);
      const segment = readdirSync(sessionDir).find((n) => n.startsWith('transcript-'));
      assert.ok(segment);
      const text = gunzipSync(readFileSync(join(sessionDir, segment))).toString('utf8');
      writeFileSync(join(sessionDir, segment), gzipSync(text.replace('hi-from-session', 'hi-from-attack!')));
      const forged = join(dir, 'forged.tar');
      assert.equal(ac(sb, 'evidence', 'export', '--session', started.id, '-o', forged).status, 0);
      const bad = agentcell(['evidence', 'verify', forged, '--json'], { cwd: dir, env });
      assert.equal(bad.status, 1, bad.stdout + bad.stderr);
      const v = JSON.parse(bad.stdout) as Verification;
      assert.equal(v.failure?.file, 'transcript.raw');
      assert.match(v.failure?.problem ?? '', /is not the run receipt's transcript\.sha256/);
    } finally {
      sb.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

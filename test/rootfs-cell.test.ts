import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { inCell, makeSandbox, type Sandbox } from './helpers.js';
import { prepareTestRootfs } from './backends-under-test.js';

/**
 * A directory rootfs on bwrap (`image build --rootfs`, `[cell] rootfs = DIR`): root in
 * the cell installs a package into the cell's own layer; the rootfs on the host and
 * other cells never see it. The rootfs is root's (debootstrap needs root), and overlayfs
 * copies a file up only when its owner is mapped, so this runs in the root pass only.
 */
const NOT_ROOT = process.getuid?.() !== 0 && 'the test rootfs belongs to root; an unprivileged user needs its own';

describe('directory rootfs on bwrap', { skip: NOT_ROOT }, () => {
  let sb: Sandbox;
  let rootfs: string;
  const run = (script: string, args: string[] = []) => inCell(sb, script, ['--backend', 'bwrap', '--root', ...args]);

  before(() => {
    rootfs = prepareTestRootfs();
    sb = makeSandbox({ 'README.md': 'hello\n' });
    writeFileSync(join(sb.workspace, 'agentcell.toml'), `[cell]\nrootfs = ${JSON.stringify(rootfs)}\n`);
    // A tiny package, built on the host with dpkg-deb.
    const pkg = join(sb.root, 'pkg');
    mkdirSync(join(pkg, 'DEBIAN'), { recursive: true });
    mkdirSync(join(pkg, 'usr', 'bin'), { recursive: true });
    writeFileSync(
      join(pkg, 'DEBIAN', 'control'),
      'Package: agentcell-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: test <t@example.invalid>\nDescription: test\n',
    );
    writeFileSync(join(pkg, 'usr', 'bin', 'agentcell-hello'), '#!/bin/sh\necho hello from a package\n');
    chmodSync(join(pkg, 'usr', 'bin', 'agentcell-hello'), 0o755);
    const built = spawnSync('dpkg-deb', ['--build', '--root-owner-group', pkg, join(sb.workspace, 'hello.deb')], {
      encoding: 'utf8',
    });
    assert.equal(built.status, 0, built.stderr);
  });
  after(() => sb.cleanup());

  it('runs the rootfs (not the host /usr), as root inside, with node for the bridge', () => {
    const r = run('id -u; cat /etc/debian_version; test -x /usr/local/bin/node && echo node; cat README.md');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^0\n12\.\d+\nnode\nhello\n$/);
  });

  it('root installs a package into the cell; the rootfs on the host and other cells stay clean', () => {
    const install = run('dpkg -i hello.deb >/dev/null && agentcell-hello && echo planted > /etc/agentcell-planted');
    assert.equal(install.status, 0, install.stderr);
    assert.equal(install.stdout, 'hello from a package\n');
    for (const path of ['usr/bin/agentcell-hello', 'etc/agentcell-planted'])
      assert.equal(existsSync(join(rootfs, path)), false, `${path} reached the rootfs on the host`);
    const dpkgStatus = spawnSync('grep', ['-c', 'agentcell-hello', join(rootfs, 'var/lib/dpkg/status')], {
      encoding: 'utf8',
    });
    assert.equal(dpkgStatus.stdout.trim(), '0', "the host rootfs's dpkg database is untouched");
    // The next run in the same cell still has it; another cell does not.
    assert.equal(run('agentcell-hello').stdout, 'hello from a package\n');
    const other = run('command -v agentcell-hello || echo absent; cat /etc/agentcell-planted 2>&1 || true', [
      '--cell',
      'other',
    ]);
    assert.match(other.stdout, /^absent\n/);
    assert.doesNotMatch(other.stdout, /planted$/m);
  });
});

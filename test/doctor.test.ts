import assert from 'node:assert/strict';
import { accessSync, constants, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { detectCgroupSupport, parseMountinfo, parseProcCgroup } from '../src/backends/cgroup-support.js';
import { DOCTOR_CHECKS, runDoctor, type DoctorReport } from '../src/evidence/doctor.js';
import { agentcell, listTree, makeSandbox } from './helpers.js';

function doctorLeftovers(dir: string): string[] {
  return readdirSync(dir).filter((name) => name.startsWith('agentcell-doctor-'));
}

describe('agentcell doctor', () => {
  let scratch: string;
  let report: DoctorReport;
  let before_: string[];
  let globalBefore: string[];

  before(async () => {
    globalBefore = doctorLeftovers(tmpdir());
    scratch = mkdtempSync(join(tmpdir(), 'agentcell-test-doctor-'));
    before_ = readdirSync(scratch);
    report = await runDoctor({ env: { ...process.env, TMPDIR: scratch } });
  });
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('returns every named check, in order, with the documented shape', () => {
    assert.deepEqual(
      report.checks.map((c) => c.name),
      [...DOCTOR_CHECKS],
    );
    for (const check of report.checks) {
      assert.equal(typeof check.ok, 'boolean', check.name);
      assert.equal(typeof check.detail, 'string', check.name);
      assert.ok(check.detail.length > 0, `${check.name} has a detail`);
      if (check.fix !== undefined) assert.equal(typeof check.fix, 'string');
      if (!check.ok && check.required) assert.ok(check.fix, `failed required check ${check.name} says how to fix it`);
    }
    assert.equal(
      report.ok,
      report.checks.every((c) => !c.required || c.ok),
    );
    const required = report.checks.filter((c) => c.required).map((c) => c.name);
    assert.deepEqual(required.sort(), ['bubblewrap', 'user-namespaces']);
  });

  it('finds bubblewrap and working user namespaces on this machine', () => {
    const byName = new Map(report.checks.map((c) => [c.name, c]));
    assert.equal(byName.get('bubblewrap')?.ok, true, byName.get('bubblewrap')?.detail);
    assert.match(byName.get('bubblewrap')?.detail ?? '', /bubblewrap \d/);
    assert.equal(byName.get('user-namespaces')?.ok, true, byName.get('user-namespaces')?.detail);
    assert.equal(report.ok, true);
    assert.match(byName.get('os')?.detail ?? '', /^linux/);
    assert.match(byName.get('resource-limits')?.detail ?? '', /^timeout: enforced; pids: .*; memory: /);
    const overlay = byName.get('overlayfs-in-userns');
    assert.match(overlay?.detail ?? '', /fuse-overlayfs/);
    assert.equal(overlay?.required, false);
    for (const tool of ['podman', 'docker', 'runsc', 'git']) {
      const check = byName.get(tool);
      if (check?.detail === 'not found') assert.match(check.fix ?? '', /install/);
    }
  });

  it('leaves no files behind in the temp directory', () => {
    assert.deepEqual(readdirSync(scratch), before_);
    assert.deepEqual(doctorLeftovers(tmpdir()), globalBefore);
  });

  it('leaves nothing behind with the default environment either, and does not hang', async () => {
    const start = Date.now();
    const again = await runDoctor();
    assert.ok(Date.now() - start < 30_000);
    assert.equal(again.checks.length, DOCTOR_CHECKS.length);
    assert.deepEqual(doctorLeftovers(tmpdir()), globalBefore);
  });
});

describe('agentcell doctor on the backends’ own probes', () => {
  it('doctor --json keeps its shape and changes nothing in the state dir or the home (a run there as the control)', () => {
    const sb = makeSandbox({ 'README.md': 'hi\n' });
    try {
      const before = listTree(sb.root);
      const r = agentcell(['doctor', '--json'], { cwd: sb.workspace, env: sb.env });
      const report = JSON.parse(r.stdout) as DoctorReport;
      assert.deepEqual(
        report.checks.map((c) => c.name),
        [...DOCTOR_CHECKS],
      );
      assert.equal(r.status, report.ok ? 0 : 3);
      const bubblewrap = report.checks.find((c) => c.name === 'bubblewrap');
      assert.match(bubblewrap?.version ?? '', /^\d/, 'the probe’s version is reported');
      assert.deepEqual(listTree(sb.root), before, 'doctor wrote nothing');
      // Control: the same listing sees what a command that writes state leaves.
      agentcell(['run', '--backend', 'bwrap', '--', 'true'], { cwd: sb.workspace, env: sb.env });
      assert.notDeepEqual(listTree(sb.root), before);
    } finally {
      sb.cleanup();
    }
  });

  it('a run the engine cannot start names the fix doctor gives for it (one place: the backend’s probe)', () => {
    const sb = makeSandbox({ 'README.md': 'hi\n' });
    try {
      const env = { ...sb.env, DOCKER_HOST: `unix://${join(sb.root, 'no-daemon.sock')}` };
      const report = JSON.parse(agentcell(['doctor', '--json'], { cwd: sb.workspace, env }).stdout) as DoctorReport;
      const docker = report.checks.find((c) => c.name === 'docker');
      assert.equal(docker?.ok, false, docker?.detail);
      assert.ok(docker?.fix, 'doctor has a fix for docker');
      const run = agentcell(['run', '--backend', 'docker', '--image', 'localhost/agentcell/cell:test', '--', 'true'], {
        cwd: sb.workspace,
        env,
      });
      assert.equal(run.status, 3, run.stderr);
      assert.ok(run.stderr.includes(`fix: ${docker.fix}`), `the run names doctor's fix: ${run.stderr}`);
    } finally {
      sb.cleanup();
    }
  });
});

describe('agentcell doctor deadlines', () => {
  it('gives up on a docker daemon that does not answer within seconds, grandchildren included', async () => {
    const bin = mkdtempSync(join(tmpdir(), 'agentcell-test-bin-'));
    try {
      // A docker client whose `info` hangs in a grandchild that holds the output pipe open.
      writeFileSync(
        join(bin, 'docker'),
        '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "Docker version 99.0.0, build test"; exit 0; fi\nsleep 60\n',
        { mode: 0o755 },
      );
      const start = Date.now();
      const report = await runDoctor({
        env: { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? '/usr/bin:/bin'}` },
      });
      const elapsed = Date.now() - start;
      const docker = report.checks.find((c) => c.name === 'docker');
      assert.equal(docker?.ok, false);
      assert.equal(docker?.detail, 'docker does not answer: no answer within 5s');
      assert.match(docker?.fix ?? '', /systemctl start docker/);
      // The engine checks are the backends' own (synchronous) probes, one after another, each
      // bounded at 5 s; a dead daemon is asked once (runsc reuses docker's answer).
      assert.ok(elapsed < 15_000, `doctor took ${elapsed} ms`);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });
});

describe('cgroup support detection', () => {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'agentcell-test-cgroup-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  function tree(dir: string, files: Record<string, string>): string {
    mkdirSync(dir, { recursive: true });
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return dir;
  }

  it('is consistent on this host: an enforceable controller has a writable directory', () => {
    const support = detectCgroupSupport();
    assert.ok(['v2', 'v1', 'none'].includes(support.version));
    for (const controller of ['pids', 'memory'] as const) {
      const dir = support.dirs[controller];
      assert.equal(support[controller], dir !== undefined);
      if (dir !== undefined) accessSync(dir, constants.W_OK);
      assert.match(support.detail, new RegExp(`${controller}: (cgroup v[12]|not enforced)`));
    }
  });

  it('parses mountinfo (with escapes) and /proc/self/cgroup', () => {
    const mounts = parseMountinfo(
      [
        '30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw',
        '34 25 0:30 /docker/abc /sys/fs/cgroup/memory rw,nosuid shared:14 - cgroup cgroup rw,memory',
        '35 25 0:31 / /mnt/with\\040space rw - cgroup cgroup rw,pids',
        '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
      ].join('\n'),
    );
    assert.deepEqual(mounts, [
      { fstype: 'cgroup2', root: '/', mountPoint: '/sys/fs/cgroup/unified', controllers: [] },
      { fstype: 'cgroup', root: '/docker/abc', mountPoint: '/sys/fs/cgroup/memory', controllers: ['memory'] },
      { fstype: 'cgroup', root: '/', mountPoint: '/mnt/with space', controllers: ['pids'] },
    ]);
    assert.deepEqual(parseProcCgroup('8:pids:/\n4:memory:/a/b\n1:name=systemd:/x\n0::/user.slice\n'), [
      { hierarchy: 8, controllers: ['pids'], path: '/' },
      { hierarchy: 4, controllers: ['memory'], path: '/a/b' },
      { hierarchy: 1, controllers: ['name=systemd'], path: '/x' },
      { hierarchy: 0, controllers: [], path: '/user.slice' },
    ]);
  });

  it('finds a delegated cgroup v2 directory', () => {
    const mnt = join(root, 'v2');
    const own = tree(join(mnt, 'user.slice', 'app.scope'), {
      'cgroup.controllers': 'cpu io memory pids\n',
      'cgroup.subtree_control': 'memory pids\n',
      'cgroup.procs': '',
    });
    const support = detectCgroupSupport({
      mountinfo: `30 25 0:26 / ${mnt} rw - cgroup2 cgroup2 rw\n`,
      cgroup: '0::/user.slice/app.scope\n',
    });
    assert.equal(support.version, 'v2');
    assert.equal(support.pids, true);
    assert.equal(support.memory, true);
    assert.equal(support.root, own);
    assert.deepEqual(support.dirs, { pids: own, memory: own });
  });

  it('reports v2 without the controllers as not enforced, saying why', () => {
    const mnt = join(root, 'v2-bare');
    tree(mnt, { 'cgroup.controllers': 'cpu io\n', 'cgroup.subtree_control': '', 'cgroup.procs': '' });
    const support = detectCgroupSupport({
      mountinfo: `30 25 0:26 / ${mnt} rw - cgroup2 cgroup2 rw\n`,
      cgroup: '0::/\n',
    });
    assert.equal(support.version, 'v2');
    assert.equal(support.pids, false);
    assert.equal(support.memory, false);
    assert.match(support.detail, /^pids: not enforced \(.+\); memory: not enforced \(.+\)$/);
  });

  it('finds hybrid cgroup v1 hierarchies, mapping paths through the mount root', () => {
    const pids = tree(join(root, 'v1', 'pids'), { 'cgroup.procs': '' });
    const memory = tree(join(root, 'v1', 'memory', 'job'), { 'cgroup.procs': '' });
    const unified = tree(join(root, 'v1', 'unified'), { 'cgroup.controllers': '', 'cgroup.subtree_control': '' });
    const support = detectCgroupSupport({
      mountinfo: [
        `40 25 0:40 / ${unified} rw - cgroup2 cgroup2 rw`,
        `41 25 0:41 / ${pids} rw - cgroup cgroup rw,pids`,
        `42 25 0:42 /outer ${join(root, 'v1', 'memory')} rw - cgroup cgroup rw,memory`,
      ].join('\n'),
      cgroup: '8:pids:/\n4:memory:/outer/job\n0::/\n',
    });
    assert.equal(support.version, 'v1');
    assert.equal(support.root, join(root, 'v1'));
    assert.deepEqual(support.dirs, { pids, memory });
    assert.equal(support.detail, `pids: cgroup v1 (${pids}); memory: cgroup v1 (${memory})`);
  });

  it('says none where no cgroup is mounted', () => {
    const support = detectCgroupSupport({ mountinfo: '22 1 8:1 / / rw - ext4 /dev/sda1 rw\n', cgroup: '' });
    assert.equal(support.version, 'none');
    assert.equal(support.pids || support.memory, false);
  });
});

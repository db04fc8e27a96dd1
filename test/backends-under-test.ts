import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI } from './helpers.js';

/**
 * Which backends the isolation and egress suites run on. scripts/test.sh sets
 * AGENTCELL_TEST_BACKENDS for each pass; a listed backend that is not ready FAILS its
 * suite (never a silent skip). Without the variable: every backend as root, bwrap
 * otherwise (rootless podman and the docker socket are not for the unprivileged pass).
 */
const ALL = ['bwrap', 'podman', 'docker', 'gvisor'] as const;
export type TestBackend = (typeof ALL)[number];

export const TEST_BACKENDS: readonly TestBackend[] = parseBackends(
  process.env['AGENTCELL_TEST_BACKENDS'] ?? (process.getuid?.() === 0 ? ALL.join(',') : 'bwrap'),
);

function parseBackends(list: string): TestBackend[] {
  const names = list
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  for (const name of names)
    if (!(ALL as readonly string[]).includes(name))
      throw new Error(`AGENTCELL_TEST_BACKENDS: unknown backend "${name}" (expected ${ALL.join(', ')})`);
  return names as TestBackend[];
}

/** The image OCI cells run in tests, imported from the cached test rootfs. */
export const TEST_IMAGE = 'localhost/agentcell/cell:test';
/** A debootstrap rootfs built once per machine (see scripts/test-images.sh). */
export const TEST_ROOTFS = process.env['AGENTCELL_TEST_ROOTFS'] ?? '/var/cache/agentcell-test/rootfs-bookworm';

const SCRIPTS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts');

/** `run` options that put a cell on this backend. */
export function backendArgs(backend: TestBackend): string[] {
  return backend === 'bwrap' ? ['--backend', 'bwrap'] : ['--backend', backend, '--image', TEST_IMAGE];
}

const ready = new Set<TestBackend>();

/**
 * Makes sure a backend can run cells, building what tests need once per machine: the
 * docker daemon (with runsc registered), the test rootfs and its image in each engine.
 * Throws (so the suite fails) with the reason when it can't.
 */
export function prepareBackend(backend: TestBackend): void {
  if (backend === 'bwrap' || ready.has(backend)) return;
  const engine = backend === 'podman' ? 'podman' : 'docker';
  if (engine === 'docker' && !answers('docker', ['version', '--format', '{{.Server.Version}}'])) {
    const started = spawnSync(join(SCRIPTS, 'start-dockerd.sh'), { encoding: 'utf8' });
    assert.equal(started.status, 0, `backend ${backend}: docker is not running: ${started.stderr}`);
  }
  if (!answers(engine, ['image', 'inspect', TEST_IMAGE])) {
    prepareTestRootfs();
    const home = mkdtempSync(join(tmpdir(), 'agentcell-image-'));
    try {
      const env = { ...process.env, AGENTCELL_HOME: home };
      cli(
        ['image', 'build', '--from', TEST_ROOTFS, '--engine', engine, '--tag', TEST_IMAGE],
        env,
        `backend ${backend}: cannot import the test image`,
      );
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }
  ready.add(backend);
}

/** The debootstrap test rootfs, built with `agentcell image build --rootfs` if this machine has none yet. */
export function prepareTestRootfs(): string {
  if (existsSync(join(TEST_ROOTFS, 'usr'))) return TEST_ROOTFS;
  const home = mkdtempSync(join(tmpdir(), 'agentcell-image-'));
  try {
    cli(
      ['image', 'build', '--rootfs', TEST_ROOTFS],
      { ...process.env, AGENTCELL_HOME: home },
      'cannot build the test rootfs',
    );
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
  return TEST_ROOTFS;
}

function answers(command: string, args: string[]): boolean {
  return spawnSync(command, args, { stdio: 'ignore', timeout: 30_000 }).status === 0;
}

function cli(args: string[], env: NodeJS.ProcessEnv, what: string): void {
  const r = spawnSync(process.execPath, [CLI, ...args], { env, encoding: 'utf8', timeout: 600_000 });
  assert.equal(r.status, 0, `${what}: ${r.stderr}`);
}

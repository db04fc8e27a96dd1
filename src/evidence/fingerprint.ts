import type { DeepReadonly } from '../_internal/deep-readonly.js';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { machine, platform, release } from 'node:os';
import { basename, join } from 'node:path';
import * as z from 'zod/mini';
import type { BackendPlan, CellSpec } from '../backends/backend.js';
import { engineOf } from '../backends/select-backend.js';
import { buildSeccompFilter } from '../backends/seccomp-filter.js';
import { queryEngineSync } from '../backends/engine-query.js';
import { toolVersion, versionNumber } from '../cell/tool-versions.js';
import { canonicalJson, sha256 } from '../_internal/canonical-hash.js';
import { findExecutable } from '../_internal/find-executable.js';
import { readJsonCache } from '../_internal/state-file.js';
import { writeJsonCache } from '../_internal/write-json-cache.js';
import type { BackendName } from '../_internal/vocabulary.js';
import { AGENTCELL_VERSION } from '../version.js';
import type { Fingerprint } from './fingerprint-schema.js';
import { FINGERPRINT_SCHEMA_ID } from './fingerprint-id.js';

/** What a fingerprint is taken of: a prepared run's backend, spec, plan and policy. */
export interface FingerprintInput {
  backend: { name: BackendName; tool: string };
  spec: DeepReadonly<Pick<CellSpec, 'rootfs' | 'image' | 'seccomp' | 'workspace'>>;
  plan: DeepReadonly<Pick<BackendPlan, 'argv' | 'api'>>;
  policy: { hash: string; mode: Fingerprint['policy']['mode'] };
  overlayDriver?: 'kernel' | 'fuse-overlayfs' | 'copy';
  agent?: { name: string; version: string };
  stateDir: string;
  hostEnv: NodeJS.ProcessEnv;
}

/**
 * The fingerprint of the cell a prepared run starts. Cheap enough for every run: tool
 * versions and the engine's runtime are cached per binary in the state dir.
 */
export function fingerprintOf(input: FingerprintInput): Fingerprint {
  const { backend, spec, stateDir, hostEnv } = input;
  const version = (tool: string): string => toolVersion(stateDir, tool, { env: hostEnv, parse: versionNumber });
  const engine = engineOf(backend.name);
  return {
    schema: FINGERPRINT_SCHEMA_ID,
    agentcell: AGENTCELL_VERSION,
    node: process.version,
    host: { os: platform(), distro: osRelease('/'), kernel: release(), arch: machine() },
    backend: {
      name: backend.name,
      tool: backend.tool,
      version: version(backend.tool),
      engine: engine ? { name: engine, version: version(engine) } : null,
      runtime: engine ? runtimeOf(backend.name, engine, stateDir, hostEnv, version) : null,
    },
    rootfs: spec.image
      ? { kind: 'image', ref: spec.image.ref, digest: spec.image.digest }
      : spec.rootfs.kind === 'directory'
        ? { kind: 'directory', hash: directoryIdentity(spec.rootfs.path) }
        : { kind: 'host' },
    workspace: { mode: spec.workspace.mode, overlayDriver: input.overlayDriver ?? null },
    seccomp: { enabled: spec.seccomp, hash: spec.seccomp ? seccompHash(backend.name, input.plan) : null },
    policy: { ...input.policy },
    tools: { git: version('git'), ...(input.agent ? { [input.agent.name]: input.agent.version } : {}) },
  };
}

/** The fingerprint of a prepared run's cell (what `agentcell fingerprint` prints, and receipts hash). */
export function runFingerprint(
  prepared: {
    backend: FingerprintInput['backend'];
    spec: FingerprintInput['spec'];
    plan: FingerprintInput['plan'];
    resolved: { hash: string; policy: { cell: { mode: Fingerprint['policy']['mode'] } } };
    overlayDriver?: FingerprintInput['overlayDriver'];
    agent?: { name: string; toolchain: { version: string } };
  },
  stateDir: string,
  hostEnv: NodeJS.ProcessEnv,
): Fingerprint {
  return fingerprintOf({
    backend: prepared.backend,
    spec: prepared.spec,
    plan: prepared.plan,
    policy: { hash: prepared.resolved.hash, mode: prepared.resolved.policy.cell.mode },
    ...(prepared.overlayDriver ? { overlayDriver: prepared.overlayDriver } : {}),
    ...(prepared.agent ? { agent: { name: prepared.agent.name, version: prepared.agent.toolchain.version } } : {}),
    stateDir,
    hostEnv,
  });
}

/** `sha256:` of the fingerprint's canonical JSON, as receipts record it. */
export function fingerprintHash(fingerprint: Fingerprint): string {
  return `sha256:${sha256(canonicalJson(fingerprint))}`;
}

function osRelease(root: string): string | null {
  for (const path of ['etc/os-release', 'usr/lib/os-release']) {
    try {
      const text = readFileSync(join(root, path), 'utf8');
      const line = /^PRETTY_NAME=(.*)$/m.exec(text)?.[1];
      if (line !== undefined) return line.replace(/^["']|["']$/g, '');
    } catch {
      // the next place
    }
  }
  return null;
}

/** A directory rootfs's identity: its top two levels (name, type, size, mtime) and its os-release. */
function directoryIdentity(dir: string): string {
  const lines: string[] = [];
  const list = (rel: string, depth: number): void => {
    let names: string[];
    try {
      names = readdirSync(join(dir, rel)).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(rel, name);
      try {
        const s = statSync(join(dir, path), { bigint: false });
        lines.push(`${path}\t${s.isDirectory() ? 'd' : 'f'}\t${s.size}\t${Math.trunc(s.mtimeMs)}`);
        if (depth < 1 && s.isDirectory()) list(path, depth + 1);
      } catch {
        lines.push(`${path}\t?`);
      }
    }
  };
  list('', 0);
  return `sha256:${sha256(`${lines.join('\n')}\n${osRelease(dir) ?? ''}`)}`;
}

/** bwrap: the BPF program it loads; OCI: the profile JSON (its file is named by the JSON's hash). */
function seccompHash(backend: BackendName, plan: FingerprintInput['plan']): string | null {
  if (backend === 'bwrap') {
    const filter = buildSeccompFilter();
    return filter ? `sha256:${sha256(filter.program)}` : null;
  }
  const api = plan.api?.create.HostConfig.SecurityOpt.find((o) => o.startsWith('seccomp='));
  if (api) return `sha256:${sha256(api.slice('seccomp='.length))}`;
  const cli = plan.argv.find((a) => a.startsWith('seccomp=') && a !== 'seccomp=unconfined');
  return cli ? `sha256-16:${/seccomp-([0-9a-f]+)\.json$/.exec(basename(cli))?.[1] ?? 'unknown'}` : null;
}

const RuntimeCache = z.record(
  z.string(),
  z.object({ path: z.string(), mtimeMs: z.number(), size: z.number(), runtime: z.string() }),
);

/** The OCI runtime the engine runs cells with: runsc for gvisor, else the engine's default (cached per engine binary). */
function runtimeOf(
  backend: BackendName,
  engine: 'podman' | 'docker',
  stateDir: string,
  hostEnv: NodeJS.ProcessEnv,
  version: (tool: string) => string,
): { name: string; version: string } {
  if (backend === 'gvisor') return { name: 'runsc', version: version('runsc') };
  const path = findExecutable(engine, hostEnv);
  if (!path) return { name: 'unknown', version: 'unknown' };
  const stat = statSync(path);
  const file = join(stateDir, 'engine-runtimes.json');
  const cache = readJsonCache(file, RuntimeCache) ?? {};
  const hit = cache[engine];
  let name = hit && hit.path === path && hit.mtimeMs === stat.mtimeMs && hit.size === stat.size ? hit.runtime : '';
  if (!name) {
    const format = engine === 'podman' ? '{{.Host.OCIRuntime.Name}}' : '{{.DefaultRuntime}}';
    // Generous: an answer that came too late would be `unknown` in this fingerprint only, and its hash would differ.
    const r = queryEngineSync(path, ['info', '--format', format], { env: hostEnv, timeout: 60_000 });
    name = r.status === 0 && r.stdout.trim() ? r.stdout.trim() : 'unknown';
    if (name !== 'unknown') {
      cache[engine] = { path, mtimeMs: stat.mtimeMs, size: stat.size, runtime: name };
      writeJsonCache(file, cache);
    }
  }
  return { name, version: name === 'unknown' ? 'unknown' : version(name) };
}

import * as z from 'zod/mini';

/**
 * The fingerprint of a cell as a run would get it: the host, the backend and its engine
 * and runtime, what the cell's root is, the overlay driver, the seccomp filter, the
 * policy, the tools. `agentcell fingerprint --json` prints it; each receipt records the
 * sha256 of its canonical JSON (`fingerprint`). The JSON Schema shipped in the package
 * (schemas/fingerprint.v1.json) is generated from this one (see docs/evidence.md); a new
 * field that changes the meaning of an old one is a new version, never an edit of v1.
 */
import { FINGERPRINT_SCHEMA_ID } from './fingerprint-id.js';

export { FINGERPRINT_SCHEMA_ID };

const d = (description: string) => z.describe(description);
const nullableString = (description: string) => z.nullable(z.string()).check(d(description));

export const FingerprintSchema = z.strictObject({
  schema: z.literal(FINGERPRINT_SCHEMA_ID).check(d('Which fingerprint schema (and version) this is')),
  agentcell: z.string().check(d("agentcell's version")),
  node: z.string().check(d('The node.js version agentcell ran on')),
  host: z.strictObject({
    os: z.string().check(d('process.platform: linux, darwin, …')),
    distro: nullableString('PRETTY_NAME of /etc/os-release, null where there is none'),
    kernel: z.string().check(d('The kernel release (uname -r)')),
    arch: z.string().check(d('The machine (uname -m)')),
  }),
  backend: z.strictObject({
    name: z.enum(['bwrap', 'podman', 'docker', 'gvisor']),
    tool: z.string().check(d('The program that starts cells: bwrap, podman, docker, runsc')),
    version: z.string(),
    engine: z
      .nullable(z.strictObject({ name: z.enum(['podman', 'docker']), version: z.string() }))
      .check(d('OCI backends: the engine CLI and its version')),
    runtime: z
      .nullable(z.strictObject({ name: z.string(), version: z.string() }))
      .check(d('OCI backends: the OCI runtime (runc, crun, runsc) and its version')),
  }),
  rootfs: z
    .discriminatedUnion('kind', [
      z.strictObject({ kind: z.literal('host') }),
      z.strictObject({
        kind: z.literal('directory'),
        hash: z
          .string()
          .check(d('sha256 of the listing of its top two levels and its os-release (an identity, not a content hash)')),
      }),
      z.strictObject({ kind: z.literal('image'), ref: z.string(), digest: z.string() }),
    ])
    .check(d("What the cell's root file system is")),
  workspace: z.strictObject({
    mode: z.enum(['overlay', 'direct', 'readonly']),
    overlayDriver: z.nullable(z.enum(['kernel', 'fuse-overlayfs', 'copy'])),
  }),
  seccomp: z.strictObject({
    enabled: z.boolean(),
    hash: nullableString("sha256 of agentcell's filter (bwrap: the BPF program; OCI: the profile JSON)"),
  }),
  policy: z.strictObject({ hash: z.string(), mode: z.enum(['strict', 'development', 'build', 'breakglass']) }),
  tools: z
    .record(z.string(), z.string())
    .check(d('Tool name → version: git, the agent CLI when the run is an agent run')),
});

export type Fingerprint = z.infer<typeof FingerprintSchema>;

/** schemas/fingerprint.v1.json, as shipped in the package (a test keeps the two equal). */
export function fingerprintJsonSchema(): Record<string, unknown> {
  return {
    $id: FINGERPRINT_SCHEMA_ID,
    title: 'agentcell fingerprint, version 1',
    description:
      'What a cell was: host, backend, engine, runtime, root file system, overlay driver, seccomp filter, policy and tools (agentcell fingerprint --json). Receipts record sha256 of its canonical JSON.',
    ...z.toJSONSchema(FingerprintSchema, { target: 'draft-2020-12' }),
  };
}

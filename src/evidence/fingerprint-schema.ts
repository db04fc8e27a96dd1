import { z } from 'zod';

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

const nullableString = z.string().nullable();

export const FingerprintSchema = z
  .object({
    schema: z.literal(FINGERPRINT_SCHEMA_ID).describe('Which fingerprint schema (and version) this is'),
    agentcell: z.string().describe("agentcell's version"),
    node: z.string().describe('The node.js version agentcell ran on'),
    host: z
      .object({
        os: z.string().describe('process.platform: linux, darwin, …'),
        distro: nullableString.describe('PRETTY_NAME of /etc/os-release, null where there is none'),
        kernel: z.string().describe('The kernel release (uname -r)'),
        arch: z.string().describe('The machine (uname -m)'),
      })
      .strict(),
    backend: z
      .object({
        name: z.enum(['bwrap', 'podman', 'docker', 'gvisor']),
        tool: z.string().describe('The program that starts cells: bwrap, podman, docker, runsc'),
        version: z.string(),
        engine: z
          .object({ name: z.enum(['podman', 'docker']), version: z.string() })
          .strict()
          .nullable()
          .describe('OCI backends: the engine CLI and its version'),
        runtime: z
          .object({ name: z.string(), version: z.string() })
          .strict()
          .nullable()
          .describe('OCI backends: the OCI runtime (runc, crun, runsc) and its version'),
      })
      .strict(),
    rootfs: z
      .discriminatedUnion('kind', [
        z.object({ kind: z.literal('host') }).strict(),
        z
          .object({
            kind: z.literal('directory'),
            hash: z
              .string()
              .describe(
                'sha256 of the listing of its top two levels and its os-release (an identity, not a content hash)',
              ),
          })
          .strict(),
        z.object({ kind: z.literal('image'), ref: z.string(), digest: z.string() }).strict(),
      ])
      .describe("What the cell's root file system is"),
    workspace: z
      .object({
        mode: z.enum(['overlay', 'direct', 'readonly']),
        overlayDriver: z.enum(['kernel', 'fuse-overlayfs', 'copy']).nullable(),
      })
      .strict(),
    seccomp: z
      .object({
        enabled: z.boolean(),
        hash: nullableString.describe("sha256 of agentcell's filter (bwrap: the BPF program; OCI: the profile JSON)"),
      })
      .strict(),
    policy: z.object({ hash: z.string(), mode: z.enum(['strict', 'development', 'build', 'breakglass']) }).strict(),
    tools: z
      .record(z.string(), z.string())
      .describe('Tool name → version: git, the agent CLI when the run is an agent run'),
  })
  .strict();

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

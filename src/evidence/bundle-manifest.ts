import * as z from 'zod/mini';

/** What an evidence bundle's `manifest.json` says (src/evidence/evidence-bundle.ts). */
export const BUNDLE_KIND = 'agentcell-evidence';

const Sha256 = z.string().check(z.regex(/^[0-9a-f]{64}$/));

export const BundleManifestSchema = z.strictObject({
  kind: z.literal(BUNDLE_KIND),
  version: z.literal(1),
  createdAt: z.string(),
  agentcell: z.string(),
  subject: z.strictObject({ cell: z.string(), run: z.nullable(z.string()), session: z.optional(z.string()) }),
  members: z.array(z.strictObject({ path: z.string(), sha256: Sha256, size: z.int().check(z.nonnegative()) })),
  /** Slots with nothing in them (a transcript outside a session, a landed commit), and why. */
  absent: z.record(z.string(), z.string()),
  keyId: z.string(),
  signature: z.strictObject({ alg: z.literal('ed25519'), keyId: z.string(), value: z.string() }),
});

export type BundleManifest = z.infer<typeof BundleManifestSchema>;
export type UnsignedManifest = Omit<BundleManifest, 'signature'>;

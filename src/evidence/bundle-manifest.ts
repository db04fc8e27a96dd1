import { z } from 'zod';

/** What an evidence bundle's `manifest.json` says (src/evidence/evidence-bundle.ts). */
export const BUNDLE_KIND = 'agentcell-evidence';

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/);

export const BundleManifestSchema = z
  .object({
    kind: z.literal(BUNDLE_KIND),
    version: z.literal(1),
    createdAt: z.string(),
    agentcell: z.string(),
    subject: z.object({ cell: z.string(), run: z.string().nullable(), session: z.string().optional() }).strict(),
    members: z.array(z.object({ path: z.string(), sha256: Sha256, size: z.number().int().nonnegative() }).strict()),
    /** Slots with nothing in them (a transcript outside a session, a landed commit), and why. */
    absent: z.record(z.string(), z.string()),
    keyId: z.string(),
    signature: z.object({ alg: z.literal('ed25519'), keyId: z.string(), value: z.string() }).strict(),
  })
  .strict();

export type BundleManifest = z.infer<typeof BundleManifestSchema>;
export type UnsignedManifest = Omit<BundleManifest, 'signature'>;

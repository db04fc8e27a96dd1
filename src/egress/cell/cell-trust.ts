import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CellSpec, ExtraMount } from '../../backends/backend.js';
import { CELL_EGRESS_DIR } from './proxy-environment.js';

/** Where the cell CA appears in a cell: the certificate alone, and system CAs + it. */
export const CELL_CA_CERT = `${CELL_EGRESS_DIR}/ca.crt`;
export const CELL_CA_BUNDLE = `${CELL_EGRESS_DIR}/ca-bundle.crt`;
/**
 * Where distributions keep the system CA bundle (Debian/Ubuntu/Alpine, Fedora/RHEL,
 * openSUSE, others); the first one the rootfs has is the base of the cell's bundle and
 * is bound over in the cell, so tools that ignore the variables trust the cell CA too.
 */
export const SYSTEM_CA_BUNDLES = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/ca-bundle.pem',
  '/etc/ssl/cert.pem',
] as const;

/** A cell CA's files on the host: `ca.key` is 0600 and never bound into a cell. */
export interface CellCaFiles {
  dir: string;
  cert: string;
  key: string;
  /** System CAs + the cell CA, rewritten each run. */
  bundle: string;
  /** The upstream CAs this cell's inspected hosts chained to (upstream-trust.ts): the gateway's, never bound in. */
  upstreamAnchors: string;
}

/** The CA files in a directory (a cell's is `<cellDir>/egress/ca`, 0700). */
export function cellCaFiles(dir: string): CellCaFiles {
  return {
    dir,
    cert: join(dir, 'ca.crt'),
    key: join(dir, 'ca.key'),
    bundle: join(dir, 'trust-bundle.crt'),
    upstreamAnchors: join(dir, 'upstream-anchors.pem'),
  };
}

/**
 * The variables that make the usual TLS stacks trust the cell CA. Node: NODE_EXTRA_CA_CERTS
 * makes every node process parse its whole root store at start-up (+36 ms per `node -e 0`
 * here, Node 20), TLS or not: every `tsc`, linter and test worker an agent runs would pay it.
 * When the cell's bundle holds the rootfs's system CAs (`systemBundle`), `--use-openssl-ca`
 * has node trust that bundle (SSL_CERT_FILE) instead, read at its first TLS connection, so
 * node trusts what curl and git in the cell trust. Without a system bundle (the bundle is the
 * cell CA alone), or when the cell's NODE_OPTIONS already picks node's store
 * (`--use-bundled-ca`, which node refuses beside `--use-openssl-ca`), NODE_EXTRA_CA_CERTS.
 */
export function trustEnvironment(options: { systemBundle: boolean; nodeOptions?: string }): Record<string, string> {
  const common = {
    SSL_CERT_FILE: CELL_CA_BUNDLE,
    REQUESTS_CA_BUNDLE: CELL_CA_BUNDLE,
    CURL_CA_BUNDLE: CELL_CA_BUNDLE,
    GIT_SSL_CAINFO: CELL_CA_BUNDLE,
  };
  const flags = options.nodeOptions?.split(/\s+/).filter(Boolean) ?? [];
  if (!options.systemBundle || flags.includes('--use-bundled-ca'))
    return { ...common, NODE_EXTRA_CA_CERTS: CELL_CA_CERT };
  // Appended to NODE_OPTIONS as given, so quoted values in it keep their spacing.
  const given = options.nodeOptions ?? '';
  if (flags.includes('--use-openssl-ca')) return { ...common, NODE_OPTIONS: given };
  return { ...common, NODE_OPTIONS: flags.length === 0 ? '--use-openssl-ca' : `${given} --use-openssl-ca` };
}

/** The system bundle of the cell's rootfs: its path in the cell and on the host, when it has one. */
export function systemBundleOf(rootfs: CellSpec['rootfs']): { inCell: string; onHost: string } | undefined {
  for (const inCell of SYSTEM_CA_BUNDLES) {
    const onHost = rootfs.kind === 'host' ? inCell : join(rootfs.path, inCell);
    if (existsSync(onHost)) return { inCell, onHost };
  }
  return undefined;
}

/** Read-only binds: the certificate, the bundle, and the bundle over the rootfs's system bundle. */
export function trustMounts(files: CellCaFiles, rootfs: CellSpec['rootfs']): ExtraMount[] {
  const mounts: ExtraMount[] = [
    { source: files.cert, target: CELL_CA_CERT, mode: 'ro' },
    { source: files.bundle, target: CELL_CA_BUNDLE, mode: 'ro' },
  ];
  const system = systemBundleOf(rootfs);
  if (system !== undefined) mounts.push({ source: files.bundle, target: system.inCell, mode: 'ro' });
  return mounts;
}

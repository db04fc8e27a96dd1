import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { existsSync, readdirSync, renameSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import * as z from 'zod/mini';
import { AgentcellError } from '../errors.js';
import { engineEnvironment, inspectImage, OCI_ENGINES, type OciEngine } from '../backends/oci-engine.js';
import { DEFAULT_CELL_IMAGE } from '../backends/select-backend.js';
import { readStateFile, writeStateFile, type StateFileKind } from '../_internal/state-file.js';
import { makeDirs } from '../_internal/make-dirs.js';

/** An image `agentcell image build` made, as recorded in the state dir (`images.json`). */
const CellImageRecordSchema = z.strictObject({
  tag: z.string(),
  engine: z.enum(OCI_ENGINES),
  /** `sha256:` + the image id: what receipts record as `image.digest`. */
  digest: z.string(),
  /** The rootfs directory or Containerfile it was built from. */
  source: z.string(),
  builtAt: z.string(),
});
export type CellImageRecord = z.infer<typeof CellImageRecordSchema>;

/** Damaged, it is an error: read as empty, the next build would overwrite every record. */
const IMAGES_FILE: StateFileKind<z.ZodMiniArray<typeof CellImageRecordSchema>> = {
  schema: z.array(CellImageRecordSchema),
  what: 'the records of images agentcell built',
  fix: (path) =>
    `Restore it from a backup, or remove it (rm ${path}): the images stay in their engine, and agentcell image build records them again`,
};

/** Where agentcell's own node goes in a cell image or rootfs: the egress bridge and `node` on PATH. */
export const IMAGE_NODE_PATH = '/usr/local/bin/node';
const DEFAULT_SUITE = 'bookworm';
const DEFAULT_MIRROR = 'http://deb.debian.org/debian';
/** What a cell needs beyond minbase: TLS roots and curl for the gateway, procps for ps. */
const DEFAULT_INCLUDE = ['ca-certificates', 'curl', 'procps'];

function recordsFile(stateDir: string): string {
  return join(stateDir, 'images.json');
}

export function listImageRecords(stateDir: string): CellImageRecord[] {
  return readStateFile(recordsFile(stateDir), IMAGES_FILE) ?? [];
}

function saveRecords(stateDir: string, records: CellImageRecord[]): void {
  makeDirs(stateDir);
  writeStateFile(recordsFile(stateDir), IMAGES_FILE, records, { mode: 0o644 });
}

export interface RootfsBuild {
  dir: string;
  /** Stream debootstrap's output to stderr. */
  verbose?: boolean;
  suite?: string;
  mirror?: string;
  include?: string[];
}

/** The debootstrap invocation that makes a directory rootfs (shown by --dry-run). */
export function rootfsCommand(build: RootfsBuild): string[] {
  const include = build.include ?? DEFAULT_INCLUDE;
  return [
    'debootstrap',
    '--variant=minbase',
    ...(include.length > 0 ? [`--include=${include.join(',')}`] : []),
    build.suite ?? DEFAULT_SUITE,
    resolve(build.dir),
    build.mirror ?? DEFAULT_MIRROR,
  ];
}

/**
 * A directory rootfs for cells: debootstrap (minbase) into a temporary sibling of `dir`,
 * agentcell's node copied in at /usr/local/bin/node, then renamed into place, so a
 * failed build leaves no half rootfs. Needs root (debootstrap creates device nodes and
 * chowns). The bwrap backend runs it as `cell.rootfs = DIR`; `--from DIR` imports it.
 */
export function buildRootfs(build: RootfsBuild): string {
  const dir = resolve(build.dir);
  if (existsSync(dir) && readdirSync(dir).length > 0)
    throw new AgentcellError('FILE_EXISTS', `${dir} exists and is not empty: choose a new directory for the rootfs`);
  const temp = join(dirname(dir), `.${basename(dir)}.building-${process.pid}`);
  const [command, ...args] = rootfsCommand({ ...build, dir: temp });
  // Verbose: debootstrap's own progress straight to our stderr (its failure is then on screen too).
  const result = spawnSync(command!, args, {
    encoding: 'utf8',
    stdio: ['ignore', build.verbose ? 2 : 'ignore', build.verbose ? 'inherit' : 'pipe'],
  });
  if (result.error || result.status !== 0) {
    spawnSync('rm', ['-rf', '--one-file-system', temp]);
    throw new AgentcellError(
      'BACKEND_UNAVAILABLE',
      `debootstrap failed (${(result.error?.message ?? (result.stderr ?? '').trim().split('\n').slice(-3).join(' ')) || `exit ${String(result.status)}`}); it needs root and a Debian mirror (--mirror URL): sudo apt-get install debootstrap`,
    );
  }
  const copy = spawnSync('install', ['-m', '0755', process.execPath, join(temp, IMAGE_NODE_PATH)], {
    encoding: 'utf8',
  });
  if (copy.status !== 0)
    throw new AgentcellError('BACKEND_UNAVAILABLE', `cannot copy node into the rootfs: ${copy.stderr}`);
  if (existsSync(dir)) spawnSync('rmdir', [dir]);
  renameSync(temp, dir);
  return dir;
}

export interface ImageBuild {
  /** A rootfs directory (imported) or a Containerfile/Dockerfile (built). */
  from: string;
  tag?: string;
  engine: OciEngine;
  stateDir: string;
  hostEnv?: NodeJS.ProcessEnv;
  /** Progress lines (steps, elapsed time, bytes sent to the engine); the engine's own output too when verbose. */
  progress?: (line: string) => void;
  verbose?: boolean;
}

/** What `image build` would run, for --dry-run. */
export function imageBuildPlan(build: ImageBuild): { tag: string; commands: string[][] } {
  const tag = build.tag ?? DEFAULT_CELL_IMAGE;
  const from = resolve(build.from);
  if (!existsSync(from)) throw new AgentcellError('USAGE', `--from ${from}: no such directory or Containerfile`);
  if (statSync(from).isDirectory()) return { tag, commands: [importTar(from), [build.engine, 'import', '-', tag]] };
  return { tag, commands: [[build.engine, 'build', '--pull=false', '-f', from, '-t', tag, dirname(from)]] };
}

/**
 * A directory rootfs as one tar stream with agentcell's node added at
 * /usr/local/bin/node (unless the rootfs has one), so the bridge and `node` work in the cell.
 */
function importTar(dir: string): string[] {
  const args = ['tar', '--numeric-owner', '-C', dir, '-c', '.'];
  if (!existsSync(join(dir, IMAGE_NODE_PATH)))
    args.push(
      '--transform',
      `s,^node$,.${IMAGE_NODE_PATH},`,
      '-C',
      dirname(process.execPath),
      basename(process.execPath),
    );
  return args;
}

/** Builds or imports the image, records its digest, and returns the record. */
export async function buildImage(build: ImageBuild): Promise<CellImageRecord> {
  const env = engineEnvironment(build.hostEnv ?? process.env);
  const { tag, commands } = imageBuildPlan(build);
  const [first, second] = commands;
  const progress = build.progress ?? ((): void => undefined);
  const started = Date.now();
  progress(`${second ? 'importing the rootfs' : 'building'} ${resolve(build.from)} into ${build.engine} as ${tag}…`);
  const watch = { bytes: 0, verbose: build.verbose === true, progress };
  const timer = setInterval(() => progress(`  ${elapsed(started)}${sent(watch.bytes)}`), 2_000);
  try {
    await pipe(first!, second, env, watch);
  } finally {
    clearInterval(timer);
  }
  progress(`built ${tag} in ${elapsed(started)}${sent(watch.bytes)}`);
  const digest = inspectImage(build.engine, tag, env);
  if (digest === undefined)
    throw new AgentcellError('BACKEND_UNAVAILABLE', `${build.engine} built ${tag} but cannot find it afterwards`);
  const record: CellImageRecord = {
    tag,
    engine: build.engine,
    digest,
    source: resolve(build.from),
    builtAt: new Date().toISOString(),
  };
  const records = listImageRecords(build.stateDir).filter((r) => !(r.tag === tag && r.engine === build.engine));
  saveRecords(build.stateDir, [...records, record]);
  return record;
}

const elapsed = (since: number): string => `${((Date.now() - since) / 1000).toFixed(1)} s`;
const sent = (bytes: number): string => (bytes > 0 ? `, ${(bytes / 2 ** 20).toFixed(1)} MiB sent to the engine` : '');

interface PipeWatch {
  bytes: number;
  verbose: boolean;
  progress: (line: string) => void;
}

/** Runs `producer | consumer` (or `producer` alone); rejects with the failing side's stderr. */
function pipe(
  producer: string[],
  consumer: string[] | undefined,
  env: Record<string, string>,
  watch: PipeWatch,
): Promise<void> {
  return new Promise((resolvePipe, reject) => {
    const errors: string[] = [];
    const start = (
      argv: string[],
      stdin: 'ignore' | 'pipe',
    ): ChildProcessByStdio<Writable | null, Readable, Readable> => {
      const child = spawn(argv[0]!, argv.slice(1), { env, stdio: [stdin, 'pipe', 'pipe'] }) as ChildProcessByStdio<
        Writable | null,
        Readable,
        Readable
      >;
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        errors.push(d);
        if (watch.verbose) for (const line of d.trimEnd().split('\n')) watch.progress(`  ${line}`);
      });
      return child;
    };
    const first = start(producer, 'ignore');
    const last = consumer ? start(consumer, 'pipe') : first;
    if (consumer) {
      first.stdout.on('data', (chunk: Buffer) => (watch.bytes += chunk.length));
      first.stdout.pipe(last.stdin!);
    }
    // The engine's own output (build steps, the new image id): shown when verbose.
    last.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (watch.verbose) for (const line of d.trimEnd().split('\n')) watch.progress(`  ${line}`);
    });
    let pending = consumer ? 2 : 1;
    let failed = false;
    const done = (argv: string[]) => (code: number | null) => {
      if (code !== 0 && !failed) {
        failed = true;
        reject(
          new AgentcellError(
            'BACKEND_UNAVAILABLE',
            `${argv.slice(0, 2).join(' ')} failed (exit ${String(code)}): ${errors.join('').trim().split('\n').slice(-3).join(' ')}`,
          ),
        );
      }
      if (--pending === 0 && !failed) resolvePipe();
    };
    first.on('error', reject).on('close', done(producer));
    if (consumer) last.on('error', reject).on('close', done(consumer));
  });
}

export interface ImageListing extends CellImageRecord {
  /** The engine still has an image under this tag with this digest. */
  present: boolean;
}

export function listImages(stateDir: string, hostEnv: NodeJS.ProcessEnv = process.env): ImageListing[] {
  const env = engineEnvironment(hostEnv);
  return listImageRecords(stateDir).map((r) => {
    let present = false;
    try {
      present = inspectImage(r.engine, r.tag, env) === r.digest;
    } catch {
      // engine gone or down: not present
    }
    return { ...r, present };
  });
}

/** Removes the image from its engine(s) and forgets it; engines that lack it are skipped. */
export function removeImage(
  stateDir: string,
  tag: string,
  engine: OciEngine | undefined,
  options: { dryRun?: boolean; hostEnv?: NodeJS.ProcessEnv } = {},
): { removed: CellImageRecord[]; commands: string[][] } {
  const records = listImageRecords(stateDir);
  const removed = records.filter((r) => r.tag === tag && (engine === undefined || r.engine === engine));
  if (removed.length === 0)
    throw new AgentcellError(
      'USAGE',
      `no image ${tag}${engine ? ` on ${engine}` : ''} was built by agentcell (agentcell image list)`,
    );
  const commands = removed.map((r) => [r.engine, 'rmi', '--force', r.tag]);
  if (options.dryRun) return { removed, commands };
  const env = engineEnvironment(options.hostEnv ?? process.env);
  for (const r of removed) {
    const result = spawnSync(r.engine, ['rmi', '--force', r.tag], { env, encoding: 'utf8' });
    if (result.status !== 0 && !/no such image|image not known|not found/i.test(result.stderr))
      throw new AgentcellError('BACKEND_UNAVAILABLE', `${r.engine} rmi ${r.tag} failed: ${result.stderr.trim()}`);
  }
  saveRecords(
    stateDir,
    records.filter((r) => !removed.includes(r)),
  );
  return { removed, commands };
}

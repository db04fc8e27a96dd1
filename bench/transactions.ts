import { spawnSync } from 'node:child_process';
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { acceptCell, type CellRef } from '../src/cell/cell-decisions.js';
import { agentcellPaths } from '../src/paths.js';
import { checkpoint, openLayerStack, restore, type LayerStack } from '../src/workspace/overlay/layer-stack.js';
import { purgeInBackground, removeTrees } from '../src/_internal/remove-trees.js';
import { fmt } from './measure.js';
import type { Section } from './startup.js';

/**
 * Workspace transactions (issue 3's targets): checkpoint and restore of an overlay cell
 * against what a snapshot tool does without layers (`cp -a`, `git stash`), at two
 * workspace sizes, plus accept of 1,000 changed files against `cp -a` of those files.
 *
 * Knobs: BENCH_SIZES=small,large (default both), BENCH_TX_RUNS (repetitions of the
 * process-level steps, default 5), BENCH_TX_LIB_RUNS (repetitions of the
 * library calls, made in a small child node process; default 21).
 */

interface Shape {
  key: string;
  label: string;
  files: number;
  bytes: number;
  /** Most repetitions of the whole-workspace copies (each takes tens of seconds at 1 GiB). */
  maxCopyRuns: number;
}

const MiB = 1024 * 1024;
const SHAPES: readonly Shape[] = [
  { key: 'small', label: '6,000 files / 33 MiB', files: 6_000, bytes: 33 * MiB, maxCopyRuns: 100 },
  { key: 'large', label: '100,000 files / 1 GiB', files: 100_000, bytes: 1024 * MiB, maxCopyRuns: 2 },
];

const TARGET_LAYER_OP_MS = 5;
const TARGET_ACCEPT_MS = 300;
/** Issue 17: `agentcell restore` then `agentcell run -- true`, both whole processes, at 100,000 files. */
const TARGET_RESTORE_READY_MS = 150;
const ACCEPT_MODIFIED = 600;
const ACCEPT_ADDED = 400;
/** ForkCell's published numbers (local overlay backend, 6,024 files); not measured here. */
const FORKCELL = { checkpointMs: 221, restoreMs: 243, files: '6,024' };

interface Stat {
  median: number;
  min: number;
  max: number;
  runs: number;
}

/** Everything measured at one size; each entry is milliseconds over the repetitions. */
interface SizeResult {
  shape: Shape;
  setup: { generateMs: number; gitAddCommitMs: number; gitStatusMs: number; changeRunMs: number };
  changes: { modified: number; added: number; deleted: number; upperBytes: number };
  lib: { checkpoint: Stat; restore: Stat; purgeSpawn: Stat; purge: Stat; rssMiB: number };
  cli: {
    checkpoint: Stat;
    restore: Stat;
    runAfterRestore: Stat;
    restoreAndReady: Stat;
    runIdle: Stat;
    /** The same, the workspace a git repository. */
    repo: { restore: Stat; runAfterRestore: Stat; restoreAndReady: Stat };
    /** A real run makes the changes, then `restore` drops it (its layer and what it kept for accept). */
    afterRun: { run: Stat; restore: Stat; runAfterRestore: Stat; restoreAndReady: Stat };
  };
  /** Median phases of the idle `run --json -- true` (`scan` walks the workspace for secret files). */
  runPhases: Record<string, number>;
  cp: { snapshot: Stat; restore: Stat };
  git: { stash: Stat; pop: Stat };
  accept: { files: number; lib: Stat; cli: Stat; cp: Stat };
}

export async function transactionsBench(cli: string): Promise<Section> {
  const wanted = (process.env['BENCH_SIZES'] ?? 'small,large').split(',').map((s) => s.trim());
  const shapes = SHAPES.filter((s) => wanted.includes(s.key));
  if (shapes.length === 0) throw new Error(`BENCH_SIZES: expected small and/or large, got ${wanted.join(',')}`);
  const runs = Math.max(1, Number(process.env['BENCH_TX_RUNS'] ?? 5));
  const libRuns = Math.max(1, Number(process.env['BENCH_TX_LIB_RUNS'] ?? 21));
  const results: SizeResult[] = [];
  for (const shape of shapes) results.push(await benchSize(cli, shape, runs, libRuns));
  return render(results, runs, libRuns);
}

async function benchSize(cli: string, shape: Shape, runs: number, libRuns: number): Promise<SizeResult> {
  // Outside any state dir, and the cells' state (AGENTCELL_HOME) outside the workspace.
  const root = mkdtempSync(join(tmpdir(), `agentcell-bench-tx-${shape.key}-`));
  const cellDirs: string[] = [];
  try {
    const workspace = join(root, 'ws');
    const acHome = join(root, 'ac');
    const env: NodeJS.ProcessEnv = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: join(root, 'home'),
      AGENTCELL_HOME: acHome,
    };
    mkdirSync(env['HOME']!, { recursive: true });

    progress(shape, `generating ${shape.label} in ${root} (removed at the end)`);
    let tree: Tree = { files: [], dirs: [] };
    const generateMs = timed(() => (tree = generate(workspace, shape)));
    const ws = realpathSync(workspace);
    const changeSet = onePercent(tree);

    // The same tree as a git repository (its git dir beside the workspace, so `cp -a`
    // copies the same bytes agentcell layers over and agentcell's runs see no repo, except
    // in the restore-and-ready rows that say so).
    const gitEnv: NodeJS.ProcessEnv = {
      ...env,
      GIT_DIR: join(root, 'git'),
      GIT_WORK_TREE: ws,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_AUTHOR_NAME: 'bench',
      GIT_AUTHOR_EMAIL: 'bench@localhost',
      GIT_COMMITTER_NAME: 'bench',
      GIT_COMMITTER_EMAIL: 'bench@localhost',
    };
    progress(shape, 'git add + commit (once)');
    const git = (...args: string[]): string => run(['git', ...args], { cwd: ws, env: gitEnv }).stdout;
    git('init', '-q');
    const gitAddCommitMs = timed(() => {
      // Compression level 1 for this one-time add only (untimed setup; stash uses the default).
      git('-c', 'core.compression=1', 'add', '-A');
      git('commit', '-q', '-m', 'generated tree');
    });
    const gitStatusMs = timed(() => git('status', '--porcelain=v1', '-z', '--untracked-files=all'));

    // The cell under test: one real run (bwrap + overlay) makes the 1% changes.
    progress(shape, `a real cell run makes the changes (${describe(counts(changeSet))})`);
    const txDir = join(acHome, 'state', 'cells', 'tx');
    cellDirs.push(txDir);
    const changeRunMs = timed(() =>
      run([cli, 'run', '--cell', 'tx', '--', 'sh', '-c', CHANGE_SCRIPT, 'sh', ...changeArgs(changeSet)], {
        cwd: ws,
        env,
      }),
    );
    const stack = openLayerStack(txDir);
    const base = stack.layers.at(-1);
    if (!base || stack.layers.length !== 1) throw new Error(`the change run left ${stack.layers.length} layers, not 1`);
    // A copy of that layer refills the upper layer before every repetition, by hard links
    // to the copy. A real copy, not links to the layer itself: a run's layer never shares
    // an inode with an older one, and a link changes the linked file's ctime, which the
    // check of the kept layer (verified restores) would find changed every time. (Whiteouts
    // are device files 0/0, which Linux ≥ 5.8 lets any user create.)
    const template = join(root, 'tpl-tx');
    run(['cp', '-a', base.dir, template]);
    const upperBytes = treeBytes(template);
    const fill = (s: LayerStack): void => {
      run(['cp', '-al', `${template}/.`, s.upper]);
    };

    // In a fresh node process the size of the CLI's: restore() forks the detached purge,
    // and a fork costs in proportion to the caller's memory (this process holds the tree).
    progress(shape, `library checkpoint / restore × ${libRuns}`);
    const child = run([
      process.execPath,
      fileURLToPath(import.meta.url),
      LAYER_OPS,
      txDir,
      template,
      base.id,
      `${libRuns}`,
    ]);
    const lib = JSON.parse(child.stdout) as LayerOpsTimes;

    progress(shape, `CLI checkpoint / restore / run -- true × ${runs}`);
    const cliTimes = {
      checkpoint: [] as number[],
      restore: [] as number[],
      runAfterRestore: [] as number[],
      restoreAndReady: [] as number[],
      runIdle: [] as number[],
    };
    const phases: Record<string, number[]> = {};
    const ac = (...args: string[]): number => timed(() => run([cli, ...args], { cwd: ws, env }));
    for (let i = 0; i < runs + 1; i++) {
      fill(openLayerStack(txDir));
      const ck = ac('checkpoint', '--cell', 'tx');
      const rs = ac('restore', '--cell', 'tx', '--to', base.id);
      const ready = ac('run', '--cell', 'tx', '--', 'true');
      waitForPurge(txDir, now());
      let stderr = '';
      const idle = timed(
        () => ({ stderr } = run([cli, 'run', '--json', '--cell', 'tx', '--', 'true'], { cwd: ws, env })),
      );
      const exit = JSON.parse(stderr.trim().split('\n').pop() ?? '{}') as { timings?: Record<string, number> };
      if (i === 0) continue;
      cliTimes.checkpoint.push(ck);
      cliTimes.restore.push(rs);
      cliTimes.runAfterRestore.push(ready);
      cliTimes.restoreAndReady.push(rs + ready);
      cliTimes.runIdle.push(idle);
      for (const [phase, ms] of Object.entries(exit.timings ?? {})) (phases[phase] ??= []).push(ms);
    }

    // The same restore and ready with the workspace a git repository, as a user's repo is: a
    // `.git` file naming the git dir beside it, so the run reads the repository's state for its
    // receipt (a `git status` of 100,000 files) and the scan checks its index. Its own loop:
    // adding and removing `.git` changes the workspace's top directory, which the scan reads again.
    progress(shape, `CLI restore / run -- true, the workspace a git repository × ${runs}`);
    writeFileSync(join(ws, '.git'), `gitdir: ${join(root, 'git')}\n`);
    const repoTimes = { restore: [] as number[], runAfterRestore: [] as number[], restoreAndReady: [] as number[] };
    for (let i = 0; i < runs + 1; i++) {
      fill(openLayerStack(txDir));
      ac('checkpoint', '--cell', 'tx');
      const rs = ac('restore', '--cell', 'tx', '--to', base.id);
      const ready = ac('run', '--cell', 'tx', '--', 'true');
      waitForPurge(txDir, now());
      if (i === 0) continue;
      repoTimes.restore.push(rs);
      repoTimes.runAfterRestore.push(ready);
      repoTimes.restoreAndReady.push(rs + ready);
    }
    rmSync(join(ws, '.git'));

    // What a user does most: a real run makes the changes, then `restore` drops the run (its
    // layer and the host's side of every changed path, kept for accept), then the next run.
    progress(shape, `a real run, its restore, run -- true × ${runs}`);
    ac('restore', '--cell', 'tx'); // back to the start: each real run makes the same changes
    const afterRun = {
      run: [] as number[],
      restore: [] as number[],
      runAfterRestore: [] as number[],
      restoreAndReady: [] as number[],
    };
    for (let i = 0; i < runs + 1; i++) {
      waitForPurge(txDir, now());
      const changed = ac('run', '--cell', 'tx', '--', 'sh', '-c', CHANGE_SCRIPT, 'sh', ...changeArgs(changeSet));
      const rs = ac('restore', '--cell', 'tx');
      const ready = ac('run', '--cell', 'tx', '--', 'true');
      if (i === 0) continue;
      afterRun.run.push(changed);
      afterRun.restore.push(rs);
      afterRun.runAfterRestore.push(ready);
      afterRun.restoreAndReady.push(rs + ready);
    }
    waitForPurge(txDir, now());

    progress(shape, `git stash -u / git stash pop × ${runs}`);
    applyChanges(ws, changeSet);
    git('update-index', '-q', '--refresh');
    const gitTimes = { stash: [] as number[], pop: [] as number[] };
    for (let i = 0; i < runs + 1; i++) {
      const stash = timed(() => git('stash', 'push', '-u', '-q'));
      const pop = timed(() => git('stash', 'pop', '-q'));
      if (i === 0) continue;
      gitTimes.stash.push(stash);
      gitTimes.pop.push(pop);
    }
    git('stash', 'push', '-u', '-q'); // back to the generated tree
    git('stash', 'drop', '-q');

    const copyRuns = Math.min(runs, shape.maxCopyRuns);
    progress(shape, `cp -a snapshot / rm -rf + cp -a restore × ${copyRuns}`);
    const cpTimes = { snapshot: [] as number[], restore: [] as number[] };
    const snapshot = join(root, 'snapshot');
    for (let i = 0; i < copyRuns; i++) {
      cpTimes.snapshot.push(timed(() => run(['cp', '-a', ws, snapshot])));
      applyChanges(ws, changeSet);
      cpTimes.restore.push(
        timed(() => {
          run(['rm', '-rf', ws]);
          run(['cp', '-a', snapshot, ws]);
        }),
      );
      run(['rm', '-rf', snapshot]);
    }

    // Accept: another cell whose run changed 1,000 files; applied to the workspace.
    progress(shape, `accept of ${ACCEPT_MODIFIED + ACCEPT_ADDED} files × ${runs}`);
    const acceptSet = acceptChangeSet(tree);
    const accDir = join(acHome, 'state', 'cells', 'acc');
    cellDirs.push(accDir);
    run([cli, 'run', '--cell', 'acc', '--', 'sh', '-c', CHANGE_SCRIPT, 'sh', ...changeArgs(acceptSet)], {
      cwd: ws,
      env,
    });
    const accTemplate = join(root, 'tpl-acc');
    // Real copies, not hard links: accept hard-links a layer file that nothing else links
    // into the workspace (as after a real run) and copies a shared one.
    run(['cp', '-a', openLayerStack(accDir).layers[0]!.dir, accTemplate]);
    const refill = (): void => {
      waitForPurge(accDir, now());
      const s = openLayerStack(accDir);
      run(['cp', '-a', `${accTemplate}/.`, s.upper]);
      checkpoint(s, { policyHash: 'bench' }); // what a run leaves: a frozen layer
    };
    const ref: CellRef = {
      paths: agentcellPaths({ AGENTCELL_HOME: acHome }),
      cell: 'acc',
      workspace: ws,
      command: ['agentcell', 'accept'],
    };
    // Accept skips a file whose content already matches, so the workspace gets its
    // original files back (and loses the added ones) before every accept.
    const originals = acceptSet.modified.map((rel) => [rel, readFileSync(join(ws, rel))] as const);
    const reset = (): void => {
      for (const [rel, content] of originals) writeFileSync(join(ws, rel), content);
      for (const rel of acceptSet.added) rmSync(join(ws, rel), { force: true });
    };
    const acceptTimes = { lib: [] as number[], cli: [] as number[], cp: [] as number[] };
    const expected = acceptSet.modified.length + acceptSet.added.length;
    const check = (how: string, applied: number): void => {
      if (applied !== expected) throw new Error(`${how} applied ${applied} change(s), expected ${expected}`);
    };
    for (let i = 0; i < runs + 1; i++) {
      // The cell holds the run's layer (the real run's own, the first time; a refill after).
      const started = now();
      const report = await acceptCell(ref, { force: false, dryRun: false });
      const libMs = now() - started;
      check('acceptCell', report.applied.length);
      reset();
      refill();
      let stdout = '';
      const cliMs = timed(() => ({ stdout } = run([cli, 'accept', '--json', '--cell', 'acc'], { cwd: ws, env })));
      check('agentcell accept', (JSON.parse(stdout) as { applied: unknown[] }).applied.length);
      reset();
      const cpMs = timed(() => run(['cp', '-a', `${accTemplate}/.`, `${ws}/`]));
      reset();
      refill();
      if (i === 0) continue;
      acceptTimes.lib.push(libMs);
      acceptTimes.cli.push(cliMs);
      acceptTimes.cp.push(cpMs);
    }

    return {
      shape,
      setup: { generateMs, gitAddCommitMs, gitStatusMs, changeRunMs },
      changes: { ...counts(changeSet), upperBytes },
      lib: {
        checkpoint: stat(lib.checkpoint),
        restore: stat(lib.restore),
        purgeSpawn: stat(lib.purgeSpawn),
        purge: stat(lib.purge),
        rssMiB: lib.rssMiB,
      },
      cli: {
        checkpoint: stat(cliTimes.checkpoint),
        restore: stat(cliTimes.restore),
        runAfterRestore: stat(cliTimes.runAfterRestore),
        restoreAndReady: stat(cliTimes.restoreAndReady),
        runIdle: stat(cliTimes.runIdle),
        repo: {
          restore: stat(repoTimes.restore),
          runAfterRestore: stat(repoTimes.runAfterRestore),
          restoreAndReady: stat(repoTimes.restoreAndReady),
        },
        afterRun: {
          run: stat(afterRun.run),
          restore: stat(afterRun.restore),
          runAfterRestore: stat(afterRun.runAfterRestore),
          restoreAndReady: stat(afterRun.restoreAndReady),
        },
      },
      runPhases: Object.fromEntries(Object.entries(phases).map(([phase, values]) => [phase, stat(values).median])),
      cp: { snapshot: stat(cpTimes.snapshot), restore: stat(cpTimes.restore) },
      git: { stash: stat(gitTimes.stash), pop: stat(gitTimes.pop) },
      accept: {
        files: expected,
        lib: stat(acceptTimes.lib),
        cli: stat(acceptTimes.cli),
        cp: stat(acceptTimes.cp),
      },
    };
  } finally {
    progress(shape, 'cleaning up');
    for (const dir of cellDirs) {
      try {
        waitForPurge(dir, now());
      } catch {
        // removed below anyway
      }
    }
    // chmod + rm: overlayfs leaves a mode-000 work/work dir.
    try {
      removeTrees([root]);
    } catch (error) {
      progress(shape, `could not remove ${root}: ${(error as Error).message}`);
    }
  }
}

// ---------------------------------------------------------------------------------------
// The library calls, timed in a child process: `node transactions.js layer-ops CELL_DIR TEMPLATE BASE_ID RUNS`

const LAYER_OPS = 'layer-ops';

interface LayerOpsTimes {
  checkpoint: number[];
  restore: number[];
  purgeSpawn: number[];
  purge: number[];
  rssMiB: number;
}

/**
 * Each repetition fills the upper layer from the template (untimed), checkpoints it,
 * fills it again, and restores to `baseId`, dropping the new layer and the upper; then
 * waits for the background deletion. Prints the times as JSON.
 */
function layerOps(cellDir: string, template: string, baseId: string, runs: number): void {
  let stack = openLayerStack(cellDir);
  const fill = (): void => {
    run(['cp', '-al', `${template}/.`, stack.upper]);
  };
  const times: LayerOpsTimes = { checkpoint: [], restore: [], purgeSpawn: [], purge: [], rssMiB: 0 };
  for (let i = 0; i < runs + 1; i++) {
    fill();
    const ck = timed(() => (stack = checkpoint(stack, { policyHash: 'bench' }).stack));
    fill();
    const started = now();
    let trashed: string[] = [];
    const rs = timed(() => ({ stack, trashed } = restore(stack, { to: baseId })));
    const spawnMs = timed(() => purgeInBackground(trashed));
    const purge = waitForPurge(cellDir, started);
    if (i === 0) continue; // warm-up
    times.checkpoint.push(ck);
    times.restore.push(rs);
    times.purgeSpawn.push(spawnMs);
    times.purge.push(purge);
  }
  times.rssMiB = process.memoryUsage().rss / MiB;
  process.stdout.write(JSON.stringify(times));
}

if (process.argv[2] === LAYER_OPS && process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [cellDir, template, baseId, runs] = process.argv.slice(3);
  layerOps(cellDir!, template!, baseId!, Number(runs));
}

// ---------------------------------------------------------------------------------------
// The generated workspace

interface Tree {
  /** Relative paths of the generated files, in generation order. */
  files: string[];
  /** Relative paths of the leaf directories. */
  dirs: string[];
}

interface ChangeSet {
  modified: string[];
  added: string[];
  deleted: string[];
}

/**
 * Writes `shape.files` files totalling exactly `shape.bytes` into nested directories
 * (about 25 files a directory, three levels), with sizes spread log-uniformly from
 * tens of bytes to tens of KiB plus a few larger files. Content is slices of one
 * deterministic source-like buffer, each behind a unique header line, so every file
 * differs and compresses about as well as code.
 */
function generate(dir: string, shape: Shape): Tree {
  const rand = mulberry32(0x5eed + shape.files);
  const pool = sourceLikePool(rand, 8 * MiB);
  const leafCount = Math.ceil(shape.files / 25);
  const dirs = Array.from(
    { length: leafCount },
    (_, l) => `pkg${l % 16}/mod${Math.floor(l / 16) % 16}/part${Math.floor(l / 256)}`,
  );
  for (const d of dirs) mkdirSync(join(dir, d), { recursive: true });

  const raw = Array.from({ length: shape.files }, () => {
    const big = rand() < 0.005;
    const [lo, hi] = big ? [512 * 1024, 4 * MiB] : [128, 128 * 1024];
    return Math.exp(Math.log(lo) + rand() * (Math.log(hi) - Math.log(lo)));
  });
  const scale = shape.bytes / raw.reduce((a, b) => a + b, 0);
  const sizes = raw.map((r) => Math.min(pool.length, Math.max(64, Math.round(r * scale))));
  sizes[sizes.length - 1]! += shape.bytes - sizes.reduce((a, b) => a + b, 0);

  const extensions = ['ts', 'ts', 'ts', 'js', 'json', 'md', 'txt', 'css'];
  const files: string[] = [];
  for (let i = 0; i < shape.files; i++) {
    const rel = `${dirs[i % leafCount]!}/file${i}.${extensions[i % extensions.length]!}`;
    const header = Buffer.from(`// ${rel} (${i})\n`);
    const body = Math.max(0, sizes[i]! - header.length);
    const offset = (i * 104_729) % (pool.length - body + 1);
    const fd = openSync(join(dir, rel), 'w', 0o644);
    try {
      writeSync(fd, header);
      writeSync(fd, pool, offset, body);
    } finally {
      closeSync(fd);
    }
    files.push(rel);
  }
  return { files, dirs };
}

/** Text that looks like code to a compressor: lines of words from a small vocabulary. */
function sourceLikePool(rand: () => number, bytes: number): Buffer {
  const letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789';
  const vocabulary = Array.from({ length: 600 }, () =>
    Array.from({ length: 2 + Math.floor(rand() * 9) }, () => letters[Math.floor(rand() * letters.length)]).join(''),
  );
  const punctuation = [' ', ' ', ' ', '.', '(', ') ', ' = ', ', ', '; ', ' {', '}'];
  const pool = Buffer.alloc(bytes);
  let at = 0;
  let column = 0;
  while (at < bytes) {
    const word = vocabulary[Math.floor(rand() * vocabulary.length)]!;
    const sep = column > 60 ? '\n' : punctuation[Math.floor(rand() * punctuation.length)]!;
    at += pool.write(word + sep, at);
    column = sep === '\n' ? 0 : column + word.length + sep.length;
  }
  return pool;
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** 1% of the files modified (appended to), 0.33% added, 0.1% deleted. */
function onePercent(tree: Tree): ChangeSet {
  const n = tree.files.length;
  return {
    modified: tree.files.filter((_, i) => i % 100 === 42),
    added: Array.from(
      { length: Math.floor(n / 300) },
      (_, j) => `${tree.dirs[(j * 7) % tree.dirs.length]!}/added${j}.ts`,
    ),
    deleted: tree.files.filter((_, i) => i % 1000 === 517),
  };
}

/** The accept workload: 600 modified and 400 added files, spread over the tree. */
function acceptChangeSet(tree: Tree): ChangeSet {
  const step = Math.floor(tree.files.length / ACCEPT_MODIFIED);
  return {
    modified: Array.from({ length: ACCEPT_MODIFIED }, (_, k) => tree.files[k * step + 7]!),
    added: Array.from({ length: ACCEPT_ADDED }, (_, j) => `${tree.dirs[(j * 13) % tree.dirs.length]!}/accepted${j}.ts`),
    deleted: [],
  };
}

/** Run inside the cell: `sh -c CHANGE_SCRIPT sh MODIFIED… :: ADDED… :: DELETED…`. */
const CHANGE_SCRIPT = [
  'while [ "$1" != :: ]; do printf "// edited in the cell\\n" >> "$1"; shift; done; shift',
  'while [ "$1" != :: ]; do printf "export const added = 1;\\n" > "$1"; shift; done; shift',
  'if [ $# -gt 0 ]; then rm -- "$@"; fi',
].join('\n');

function changeArgs(set: ChangeSet): string[] {
  return [...set.modified, '::', ...set.added, '::', ...set.deleted];
}

/** The same changes as CHANGE_SCRIPT, made on the host (for the baselines). */
function applyChanges(ws: string, set: ChangeSet): void {
  for (const rel of set.modified) appendFileSync(join(ws, rel), '// edited in the cell\n');
  for (const rel of set.added) writeFileSync(join(ws, rel), 'export const added = 1;\n');
  for (const rel of set.deleted) if (existsSync(join(ws, rel))) unlinkSync(join(ws, rel));
}

interface ChangeCounts {
  modified: number;
  added: number;
  deleted: number;
}

function counts(set: ChangeSet): ChangeCounts {
  return { modified: set.modified.length, added: set.added.length, deleted: set.deleted.length };
}

function describe(c: ChangeCounts): string {
  const n = (x: number): string => x.toLocaleString('en-US');
  return `${n(c.modified)} modified, ${n(c.added)} added, ${n(c.deleted)} deleted`;
}

function treeBytes(dir: string): number {
  const out = spawnSync('du', ['-sb', dir], { encoding: 'utf8' }).stdout;
  return Number(out.split('\t')[0] ?? 0);
}

// ---------------------------------------------------------------------------------------
// Timing

function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

function timed(action: () => void): number {
  const started = now();
  action();
  return now() - started;
}

/** Runs a command to completion; throws with its stderr unless it exits 0. */
function run(
  argv: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): { stdout: string; stderr: string } {
  const [file, ...args] = argv;
  const result = spawnSync(file!, args, {
    ...options,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * MiB,
  });
  if (result.error || result.status !== 0) {
    const shown = argv.length > 12 ? [...argv.slice(0, 12), `… (${argv.length} args)`] : argv;
    throw new Error(
      `${shown.join(' ')} failed (${result.error?.message ?? `exit ${String(result.status)}`}): ${result.stderr.trim()}`,
    );
  }
  return { stdout: result.stdout, stderr: result.stderr };
}

/**
 * Restore renames dropped layers into trash/ and a detached process deletes them.
 * Waits until trash/ is empty; returns the milliseconds since `started`.
 */
function waitForPurge(cellDir: string, started: number): number {
  const trash = join(cellDir, 'trash');
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const deadline = started + 120_000;
  while (existsSync(trash) && readdirSync(trash).length > 0) {
    if (now() > deadline) throw new Error(`${trash} still not empty after 120 s`);
    Atomics.wait(pause, 0, 0, 2);
  }
  return now() - started;
}

function stat(samples: readonly number[]): Stat {
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = (sorted.length - 1) / 2;
  return {
    median: (sorted[Math.floor(mid)]! + sorted[Math.ceil(mid)]!) / 2,
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
    runs: sorted.length,
  };
}

function progress(shape: Shape, message: string): void {
  process.stderr.write(`bench transactions [${shape.key}]: ${message}\n`);
}

// ---------------------------------------------------------------------------------------
// Markdown

function render(results: readonly SizeResult[], runs: number, libRuns: number): Section {
  const header = `| | ${results.map((r) => r.shape.label).join(' | ')} | target |`;
  const rule = `|---|${results.map(() => '---:').join('|')}|---|`;
  const row = (name: string, cell: (r: SizeResult) => string, target = ''): string =>
    `| ${name} | ${results.map(cell).join(' | ')} | ${target} |`;
  const msRange = (s: Stat): string => `${fmt(s.median)} <sub>(${fmt(s.min)}–${fmt(s.max)})</sub>`;
  const ratio = (a: Stat, b: Stat): string => `${(a.median / b.median).toFixed(a.median / b.median >= 100 ? 0 : 1)}×`;

  const layerTable = [
    header,
    rule,
    row(
      'changes in the cell (one real run)',
      (r) => `${describe(r.changes)}; ${mib(r.changes.upperBytes)} in the layer`,
    ),
    row('**agentcell checkpoint** (library)', (r) => `**${msRange(r.lib.checkpoint)}**`, `≤ ${TARGET_LAYER_OP_MS} ms`),
    row('**agentcell restore** (library)', (r) => `**${msRange(r.lib.restore)}**`, `≤ ${TARGET_LAYER_OP_MS} ms`),
    row('↳ then starting the deletion of the dropped layers (`purgeInBackground`)', (r) => msRange(r.lib.purgeSpawn)),
    row('↳ the background deletion, until done', (r) => msRange(r.lib.purge), 'not waited for'),
    row('`agentcell checkpoint` (CLI, whole process)', (r) => msRange(r.cli.checkpoint)),
    row('`agentcell restore` (CLI, whole process)', (r) => msRange(r.cli.restore)),
    row('`agentcell run -- true` right after the restore', (r) => msRange(r.cli.runAfterRestore)),
    row(
      '**restore and ready** (the two above)',
      (r) => `**${msRange(r.cli.restoreAndReady)}**`,
      `≤ ${TARGET_RESTORE_READY_MS} ms at 100,000 files`,
    ),
    row(
      '**restore and ready**, the workspace a git repository (a `.git` naming the git dir)',
      (r) => `**${msRange(r.cli.repo.restoreAndReady)}**`,
      `≤ ${TARGET_RESTORE_READY_MS} ms at 100,000 files`,
    ),
    row("↳ of which `agentcell run -- true`, which waits for the receipt's `git status`", (r) =>
      msRange(r.cli.repo.runAfterRestore),
    ),
    row(
      '`agentcell run` making the changes (whole process: the changes, then freezing its layer and keeping the host side of each changed path for accept)',
      (r) => msRange(r.cli.afterRun.run),
    ),
    row('↳ then `agentcell restore` of that run (back to the start)', (r) => msRange(r.cli.afterRun.restore)),
    row('↳ then `agentcell run -- true`', (r) => msRange(r.cli.afterRun.runAfterRestore)),
    row(
      '**restore and ready** after a real run (the two above)',
      (r) => `**${msRange(r.cli.afterRun.restoreAndReady)}**`,
      `≤ ${TARGET_RESTORE_READY_MS} ms at 100,000 files`,
    ),
    row('`agentcell run -- true` in an idle cell', (r) => msRange(r.cli.runIdle)),
    row('↳ of which the secret-file scan of the workspace (`scan` phase)', (r) => fmt(r.runPhases['scan'] ?? NaN)),
    row('`cp -a` snapshot of the workspace', (r) => msRange(r.cp.snapshot)),
    row('`rm -rf` + `cp -a` back (restore)', (r) => msRange(r.cp.restore)),
    row('`git stash -u` (same changes)', (r) => msRange(r.git.stash)),
    row('`git stash pop`', (r) => msRange(r.git.pop)),
    row('`cp -a` snapshot / agentcell checkpoint', (r) => ratio(r.cp.snapshot, r.lib.checkpoint)),
    row('`cp -a` restore / agentcell restore', (r) => ratio(r.cp.restore, r.lib.restore)),
    row('`git stash -u` / agentcell checkpoint', (r) => ratio(r.git.stash, r.lib.checkpoint)),
    row('`cp -a` restore / restore and ready', (r) => ratio(r.cp.restore, r.cli.restoreAndReady)),
    row(
      `ForkCell checkpoint / restore, **published**, not measured here (local overlay, ${FORKCELL.files} files)`,
      (r) => (r.shape.key === 'small' ? `${FORKCELL.checkpointMs} / ${FORKCELL.restoreMs}` : '—'),
    ),
  ];

  const acceptTable = [
    header,
    rule,
    row(
      'changes applied',
      (r) => `${r.accept.files.toLocaleString('en-US')} (${ACCEPT_MODIFIED} modified + ${ACCEPT_ADDED} added files)`,
    ),
    row('`acceptCell` (library)', (r) => msRange(r.accept.lib), `≤ ${TARGET_ACCEPT_MS} ms`),
    row(
      '**`agentcell accept`** (CLI, whole process)',
      (r) => `**${msRange(r.accept.cli)}**`,
      `≤ ${TARGET_ACCEPT_MS} ms`,
    ),
    row('`cp -a` of the same files into the workspace', (r) => msRange(r.accept.cp)),
    row('`agentcell accept` / `cp -a`', (r) => ratio(r.accept.cli, r.accept.cp)),
  ];

  const setupTable = [
    header,
    rule,
    row('generate the workspace', (r) => fmt(r.setup.generateMs)),
    row('`git add -A` + `git commit` (once, for the git baseline)', (r) => fmt(r.setup.gitAddCommitMs)),
    row('`git status --untracked-files=all` (clean tree)', (r) => fmt(r.setup.gitStatusMs)),
    row('the real cell run that makes the changes', (r) => fmt(r.setup.changeRunMs)),
  ];

  const markdown = [
    `Two generated workspaces (nested directories, about 25 files each, sizes from tens of bytes to a few MiB,`,
    `deterministic source-like content). One real \`agentcell run\` (bwrap + overlay) changes 1% of the files,`,
    `adds and deletes a few; a copy of its layer is hard-linked into the upper layer before each repetition.`,
    'Steps run one after another in one process (the three accept variants alternate), on a machine other work',
    'may share: min–max shows the spread.',
    `Median ms, with min–max; library calls ${libRuns} times and process-level steps ${runs} times, each after one`,
    `warm-up; the whole-workspace copies (no warm-up) ${results.map((r) => `${Math.min(runs, r.shape.maxCopyRuns)} times at ${r.shape.label}`).join(', ')}.`,
    '',
    ...layerTable,
    '',
    '- The library numbers are `checkpoint()` and `restore()` of `src/workspace/overlay/layer-stack.ts`, called',
    `  in a fresh node process (${results.map((r) => `${r.lib.rssMiB.toFixed(0)} MiB`).join(' / ')} resident, about the CLI's size): renames and two`,
    '  fsynced rewrites of `layers.json`, nothing proportional to the workspace or to the changes.',
    '  `restore()` returns once the dropped layers are renamed into `trash/`; a detached `rm -rf` deletes them',
    '  afterwards (the "background deletion" row), and the next run does not wait for it: it only mounts the',
    '  layers that are left. The CLI starts that `rm` after the receipt is signed (`purgeInBackground`, its own',
    "  row): the fork behind it grows with the calling process's memory, so it is kept off the restore itself.",
    '- The CLI rows are whole processes (node start-up, policy, lock, signed receipt). `agentcell restore`',
    "  takes its receipt's counts from what each dropped layer recorded when it was frozen (no diff), and checks",
    "  the kept layer by its entries' inodes and change times (`statHash`, no file read; the entries come from",
    "  the list saved when the hash was taken, so no directory is read but the layer's top). `run` lstats each",
    '  directory of the workspace for the secret scan (the `scan` row) and reads only those whose device, inode,',
    '  mtime or ctime changed since the cached scan.',
    '- The rows above them restore to a checkpoint over a refilled upper layer; the "after a real run" rows',
    '  restore what a user restores: a run that made the changes itself, whose end froze its layer and kept',
    "  the host's side of each changed path for accept's conflict check (one pack file per run), all dropped",
    '  by `restore` back to the start (the pack and the layer renamed into the trash, deleted in the background).',
    '- Baselines: `cp -a` copies the whole workspace each way (what a snapshot tool without layers does);',
    '  `git stash -u` / `pop` on the same tree committed to git, with the same changes. The git directory',
    '  sits beside the workspace, so the cells see no repository, except in the rows that say "the workspace a',
    '  git repository", where a `.git` file in the workspace names it, as in a user\'s repo: there a run also',
    "  reads the repository's state for its receipt (`git status` of the tracked files, from the start of",
    '  the run), and `run -- true` ends when it has.',
    '',
    `### Accept of ${(ACCEPT_MODIFIED + ACCEPT_ADDED).toLocaleString('en-US')} changed files`,
    '',
    ...acceptTable,
    '',
    '`acceptCell` (`src/cell/cell-decisions.ts`) diffs the layers, checks every path, then applies: deletions and',
    'directories one by one, files eight at a time (renames in different directories overlap in the kernel).',
    'Each file is put beside its target (a hard link of the layer file when nothing else links it, as after a',
    "real run; else a copy) and renamed over it; the file it replaces is first linked into the cell's trash, so",
    'the rename frees no inode (freeing one is most of the cost of a replace on ext4), and a detached `rm` deletes',
    'the trash after the receipt is signed. Before each repetition the cell gets a fresh copy of the same layer and',
    'the workspace its original files back (untimed). `cp -a` creates the same 1,000 files and copies their data.',
    '',
    '### Setup (once per size, for reference)',
    '',
    ...setupTable,
  ].join('\n');

  const verdict = (ok: boolean, text: string): string => `${ok ? 'met' : 'MISSED'}: ${text}`;
  const verdicts = results.flatMap((r) => [
    verdict(
      r.lib.checkpoint.median <= TARGET_LAYER_OP_MS,
      `checkpoint at ${r.shape.label}: ${fmt(r.lib.checkpoint.median)} ms (target ≤ ${TARGET_LAYER_OP_MS} ms)`,
    ),
    verdict(
      r.lib.restore.median <= TARGET_LAYER_OP_MS,
      `restore at ${r.shape.label}: ${fmt(r.lib.restore.median)} ms (target ≤ ${TARGET_LAYER_OP_MS} ms)`,
    ),
    ...(r.shape.key === 'large'
      ? [
          verdict(
            Math.max(
              r.cli.restoreAndReady.median,
              r.cli.repo.restoreAndReady.median,
              r.cli.afterRun.restoreAndReady.median,
            ) <= TARGET_RESTORE_READY_MS,
            `restore and ready at ${r.shape.label} (\`agentcell restore\` then \`agentcell run -- true\`, two processes): ${fmt(r.cli.restoreAndReady.median)} ms (restore ${fmt(r.cli.restore.median)}, run ${fmt(r.cli.runAfterRestore.median)}, each a median; the secret scan of an idle run ${fmt(r.runPhases['scan'] ?? NaN)} ms); the workspace a git repository: ${fmt(r.cli.repo.restoreAndReady.median)} ms (run ${fmt(r.cli.repo.runAfterRestore.median)}); after a real run: ${fmt(r.cli.afterRun.restoreAndReady.median)} ms (restore ${fmt(r.cli.afterRun.restore.median)}); target ≤ ${TARGET_RESTORE_READY_MS} ms all three`,
          ),
        ]
      : []),
    verdict(
      r.accept.cli.median <= TARGET_ACCEPT_MS,
      `agentcell accept of ${(ACCEPT_MODIFIED + ACCEPT_ADDED).toLocaleString('en-US')} files at ${r.shape.label}: ${fmt(r.accept.cli.median)} ms, library ${fmt(r.accept.lib.median)} ms (target ≤ ${TARGET_ACCEPT_MS} ms)`,
    ),
  ]);
  return { title: 'Workspace transactions: checkpoint, restore, accept', markdown, verdicts };
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

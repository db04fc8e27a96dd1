import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Which resource limits this process could enforce with cgroups, and where. Read-only. */
export interface CgroupSupport {
  /** The hierarchy that supplies the limits (or, when none does, the one mounted). */
  version: 'v2' | 'v1' | 'none';
  pids: boolean;
  memory: boolean;
  /** v2: the process's own cgroup directory; v1: the directory holding the controller hierarchies. */
  root?: string;
  /** The exact directory agentcell would create a child cgroup in, per enforceable controller. */
  dirs: { pids?: string; memory?: string };
  /** One line per controller, e.g. "pids: cgroup v1 (/sys/fs/cgroup/pids)". */
  detail: string;
}

export interface CgroupMount {
  fstype: 'cgroup' | 'cgroup2';
  /** The cgroup path the mount shows as its root (not "/" inside some containers). */
  root: string;
  mountPoint: string;
  /** v1: the controllers bound to this hierarchy (from the super options). */
  controllers: string[];
}

export interface ProcCgroupEntry {
  /** 0 for the v2 (unified) line. */
  hierarchy: number;
  /** v1 controllers of the hierarchy; empty for v2. */
  controllers: string[];
  path: string;
}

const LIMITED = ['pids', 'memory'] as const;
type Controller = (typeof LIMITED)[number];

export interface CgroupSources {
  /** Text of /proc/self/mountinfo. */
  mountinfo: string;
  /** Text of /proc/self/cgroup. */
  cgroup: string;
}

/**
 * Finds out, without creating or writing anything, whether this process can put a
 * cell in a cgroup that limits pids and memory: a writable cgroup v2 directory with
 * the controllers available, or writable cgroup v1 pids/memory hierarchies.
 */
export function detectCgroupSupport(sources?: CgroupSources): CgroupSupport {
  let text: CgroupSources;
  try {
    text = sources ?? {
      mountinfo: readFileSync('/proc/self/mountinfo', 'utf8'),
      cgroup: readFileSync('/proc/self/cgroup', 'utf8'),
    };
  } catch {
    return {
      version: 'none',
      pids: false,
      memory: false,
      dirs: {},
      detail: 'pids: not enforced (no /proc: not Linux); memory: not enforced (no /proc: not Linux)',
    };
  }
  const mounts = parseMountinfo(text.mountinfo).filter((m) => existsSync(m.mountPoint));
  const entries = parseProcCgroup(text.cgroup);

  const found: Partial<Record<Controller, { version: 'v2' | 'v1'; dir: string }>> = {};
  const reasons: Partial<Record<Controller, string>> = {};

  // cgroup v2: the process's own directory on the unified hierarchy.
  const unifiedEntry = entries.find((e) => e.hierarchy === 0);
  const unified = mounts.find((m) => m.fstype === 'cgroup2');
  let v2Dir: string | undefined;
  if (unified && unifiedEntry) {
    const dir = cgroupDir(unified, unifiedEntry.path);
    if (dir !== undefined) {
      v2Dir = dir;
      const available = words(readText(join(dir, 'cgroup.controllers')));
      const delegated = words(readText(join(dir, 'cgroup.subtree_control')));
      const dirWritable = writable(dir) && writable(join(dir, 'cgroup.procs'));
      const canDelegate = writable(join(dir, 'cgroup.subtree_control'));
      for (const controller of LIMITED) {
        if (!available.includes(controller) && !delegated.includes(controller)) continue;
        if (dirWritable && (delegated.includes(controller) || canDelegate)) found[controller] = { version: 'v2', dir };
        else reasons[controller] ??= `cgroup v2 ${dir} is not writable by this user`;
      }
    }
  }

  // cgroup v1: one hierarchy per controller (hybrid hosts bind each controller to one of the two).
  let v1Parent: string | undefined;
  for (const controller of LIMITED) {
    if (found[controller]) continue;
    const mount = mounts.find((m) => m.fstype === 'cgroup' && m.controllers.includes(controller));
    if (!mount) continue;
    v1Parent ??= dirname(mount.mountPoint);
    const entry = entries.find((e) => e.hierarchy !== 0 && e.controllers.includes(controller));
    const dir = entry ? cgroupDir(mount, entry.path) : undefined;
    if (dir !== undefined && writable(dir) && writable(join(dir, 'cgroup.procs')))
      found[controller] = { version: 'v1', dir };
    else reasons[controller] = `cgroup v1 ${dir ?? mount.mountPoint} is not writable by this user`;
  }

  const versions = LIMITED.map((c) => found[c]?.version).filter((v): v is 'v2' | 'v1' => v !== undefined);
  const v1Mounted = mounts.some((m) => m.fstype === 'cgroup' && LIMITED.some((c) => m.controllers.includes(c)));
  const version: CgroupSupport['version'] = versions.includes('v2')
    ? 'v2'
    : versions.includes('v1') || v1Mounted
      ? 'v1'
      : unified
        ? 'v2'
        : 'none';

  const dirs: CgroupSupport['dirs'] = {};
  const parts: string[] = [];
  for (const controller of LIMITED) {
    const hit = found[controller];
    if (hit) {
      dirs[controller] = hit.dir;
      parts.push(`${controller}: cgroup ${hit.version} (${hit.dir})`);
    } else {
      const why = reasons[controller] ?? 'no cgroup hierarchy offers this controller';
      parts.push(`${controller}: not enforced (${why})`);
    }
  }
  const root = version === 'v2' ? v2Dir : version === 'v1' ? v1Parent : undefined;
  return {
    version,
    pids: found.pids !== undefined,
    memory: found.memory !== undefined,
    ...(root !== undefined ? { root } : {}),
    dirs,
    detail: parts.join('; '),
  };
}

/** Parses /proc/self/mountinfo, keeping the cgroup and cgroup2 mounts. */
export function parseMountinfo(text: string): CgroupMount[] {
  const mounts: CgroupMount[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    if (dash < 6) continue;
    const fstype = fields[dash + 1];
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    const root = fields[3];
    const mountPoint = fields[4];
    if (root === undefined || mountPoint === undefined) continue;
    const superOptions = (fields[dash + 3] ?? '').split(',');
    mounts.push({
      fstype,
      root: unescapeMountinfo(root),
      mountPoint: unescapeMountinfo(mountPoint),
      controllers: fstype === 'cgroup' ? superOptions.filter((o) => o !== 'rw' && o !== 'ro') : [],
    });
  }
  return mounts;
}

/** Parses /proc/self/cgroup ("hierarchy-id:controller-list:path" per line). */
export function parseProcCgroup(text: string): ProcCgroupEntry[] {
  const entries: ProcCgroupEntry[] = [];
  for (const line of text.split('\n')) {
    const match = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!match) continue;
    entries.push({
      hierarchy: Number(match[1]),
      controllers: (match[2] ?? '').split(',').filter((c) => c !== ''),
      path: match[3] ?? '/',
    });
  }
  return entries;
}

/** The directory of a process's cgroup on a mounted hierarchy, if it is visible there. */
function cgroupDir(mount: CgroupMount, path: string): string | undefined {
  let relative: string;
  if (mount.root === '/') relative = path;
  else if (path === mount.root || path.startsWith(`${mount.root}/`)) relative = path.slice(mount.root.length);
  else relative = path; // a cgroup namespace already shows paths relative to the mount
  const dir = join(mount.mountPoint, relative).replace(/(.)\/+$/, '$1');
  return existsSync(dir) ? dir : undefined;
}

function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function words(text: string): string[] {
  return text.split(/\s+/).filter((w) => w !== '');
}

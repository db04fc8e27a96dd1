import { existsSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative } from 'node:path';
import type { MaskSpec } from '../backends/backend.js';
import { AgentcellError } from '../errors.js';
import type { OwnDir } from '../paths.js';

/** A host directory the cell sees, at `target`. */
export interface BoundSource {
  source: string;
  target: string;
  /** How to name it in an error: "the workspace", "[[mount]] ~/x". */
  what: string;
}

export interface OwnDirMasks {
  masks: MaskSpec[];
  /** Host paths of the masked dirs this process may create during the run: made before the cell starts. */
  create: string[];
  /** Masked dirs inside the workspace, relative: the secret scan leaves them alone. */
  inWorkspace: string[];
}

/**
 * Masks for agentcell's own directories (signing key, logins, cells, config) wherever a
 * bound source holds one: the workspace when it is a home, a `[[mount]]` of one, a
 * directory rootfs. The ones this process uses are masked even before they exist, since
 * the run may create them (the signing key of a first run): the run makes them first, so
 * the mask has something to cover. A bound source inside one of them is refused.
 */
export function ownDirMasks(
  ownDirs: readonly OwnDir[],
  sources: readonly BoundSource[],
  workspace: string,
): OwnDirMasks {
  const result: OwnDirMasks = { masks: [], create: [], inWorkspace: [] };
  const seen = new Set<string>();
  const candidates = ownDirs
    .filter((own) => own.active || existsSync(own.path))
    .map((own) => ({ own, real: realOrPlanned(own.path) }));
  // One mask for a dir and what is inside it (AGENTCELL_HOME and its config/state): a mask can't go inside another.
  const outermost = candidates.filter(
    (c) => !candidates.some((o) => o.real !== c.real && relativeInside(o.real, c.real) !== undefined),
  );
  for (const { own, real } of outermost) {
    for (const bound of sources) {
      const source = realOrPlanned(bound.source);
      const inside = relativeInside(source, real);
      if (inside === undefined) {
        if (relativeInside(real, source) !== undefined)
          throw new AgentcellError(
            bound.what === 'the workspace' ? 'WORKSPACE_INVALID' : 'POLICY_INVALID',
            `${bound.what} (${bound.source}) is inside agentcell's own directory ${own.path} (signing key, logins, cells): a cell must never see it; choose another directory`,
          );
        continue;
      }
      const target = inside === '' ? bound.target : join(bound.target, inside);
      if (seen.has(target)) continue;
      seen.add(target);
      result.masks.push({ target, kind: existsSync(real) && !statSync(real).isDirectory() ? 'file' : 'dir' });
      if (!existsSync(real)) result.create.push(real);
      if (source === realOrPlanned(workspace)) result.inWorkspace.push(inside);
    }
  }
  return result;
}

/** `child` relative to `parent` if it is the same or inside, else undefined. */
function relativeInside(parent: string, child: string): string | undefined {
  const rel = relative(parent, child);
  if (rel === '') return '';
  return rel === '..' || rel.startsWith('../') || isAbsolute(rel) ? undefined : rel;
}

/** The real path of `path`, or of its nearest existing ancestor joined with the rest (it may be made later). */
function realOrPlanned(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    const parent = dirname(path);
    return parent === path ? path : join(realOrPlanned(parent), basename(path));
  }
}

import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import type { LayerStack } from './layer-stack.js';

/**
 * Whether a workspace path still exists in the cell's merged view, judged by
 * whiteouts (character devices 0/0) in the layers above the workspace. bwrap creates a
 * missing mount point, and in an overlay cell it would land in the upper layer as a
 * spurious change, so masks and read-only binds are only placed on visible paths.
 * (A deletion through an opaque directory is not seen here; diff reports what happens.)
 */
export function visibleInLayers(stack: LayerStack, relative: string): boolean {
  const parts = relative.split('/');
  for (const dir of [stack.upper, ...stack.layers.map((l) => l.dir).reverse()]) {
    for (let i = 1; i <= parts.length; i++) {
      try {
        const stat = lstatSync(join(dir, ...parts.slice(0, i)));
        if (stat.isCharacterDevice() && stat.rdev === 0) return false;
      } catch {
        break; // not in this layer: look further down
      }
    }
  }
  return true;
}

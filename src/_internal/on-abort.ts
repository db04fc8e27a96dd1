/**
 * Calls `action` when `signal` aborts, or at once if it already has. `addEventListener`
 * alone never fires for a signal aborted before it was added: a bound passed while the cell
 * was still starting (the disk watch's hit before docker's start request returned) was lost,
 * and the cell ran on. Returns what removes the listener.
 */
export function onAbort(signal: AbortSignal | undefined, action: () => void): () => void {
  if (signal === undefined) return () => undefined;
  if (signal.aborted) {
    action();
    return () => undefined;
  }
  signal.addEventListener('abort', action, { once: true });
  return () => signal.removeEventListener('abort', action);
}

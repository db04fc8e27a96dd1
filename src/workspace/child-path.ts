/**
 * `dir/rel` for a plain relative path (names read from a directory, or a path accept has
 * checked is normalized): path.join's normalizing is a tenth of a diff's time when it runs
 * cold, once per process, as the CLI's does.
 */
export function childPath(dir: string, rel: string): string {
  return dir.endsWith('/') ? `${dir}${rel}` : `${dir}/${rel}`;
}

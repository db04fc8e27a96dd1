/** The cell's host name: its name in [a-z0-9-], at most `maxLength` (a host name allows 63). */
export function cellHostname(cell: string, maxLength = 63): string {
  return (
    cell
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, maxLength) || 'cell'
  );
}

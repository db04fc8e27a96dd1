import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sideBySide, sideBySideRows, type SideBySideRow } from '../src/ui/ui-side-by-side.js';

/** A row as `old | new` text, `·` for a blank side, `*` marking a changed row. */
const show = (row: SideBySideRow): string =>
  row.kind === 'pair'
    ? `${row.changed ? '*' : ' '}${row.old ? `${row.old.no}:${row.old.text}` : '·'} | ${row.new ? `${row.new.no}:${row.new.text}` : '·'}`
    : `${row.kind} ${row.text}`;

describe('ui: side-by-side rows', () => {
  it('pairs removed and added lines in order, blanks facing the longer run, numbers per side', () => {
    const patch = [
      'diff --git a/f b/f',
      '--- a/f',
      '+++ b/f',
      '@@ -1,4 +1,5 @@',
      ' first',
      '-old 1',
      '-old 2',
      '+new 1',
      ' --- a context line that looks like a header',
      '-gone',
      '+++ an added line that looks like a header',
      '+extra',
      '@@ -10,1 +11,1 @@',
      '-x',
      '+y',
      '\\ No newline at end of file',
      '',
    ].join('\n');
    assert.deepEqual(sideBySideRows(patch).map(show), [
      'hunk @@ -1,4 +1,5 @@',
      ' 1:first | 1:first',
      '*2:old 1 | 2:new 1',
      '*3:old 2 | ·',
      ' 4:--- a context line that looks like a header | 3:--- a context line that looks like a header',
      '*5:gone | 4:++ an added line that looks like a header',
      '*· | 5:extra',
      'hunk @@ -10,1 +11,1 @@',
      '*10:x | 11:y',
      'note No newline at end of file',
    ]);
  });

  it('names a binary file instead of showing it, and escapes what a file holds', () => {
    const binary = sideBySide({
      path: 'b.bin',
      change: 'added',
      patch: 'diff --git a/b.bin b/b.bin\nnew file mode 100644\nBinary files /dev/null and b/b.bin differ\n',
      binary: true,
      added: 0,
      removed: 0,
    }).text;
    assert.match(binary, /binary file: \/dev\/null and b\/b\.bin differ/);
    assert.match(binary, /new file mode 100644/);
    const markup = sideBySide({
      path: 'x.html',
      change: 'modified',
      patch:
        'diff --git a/x.html b/x.html\n--- a/x.html\n+++ b/x.html\n@@ -1 +1 @@\n-<b>\n+<script>alert(1)</script>\n',
      binary: false,
      added: 1,
      removed: 1,
    }).text;
    assert.ok(markup.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
    assert.ok(!markup.includes('<script>'));
  });
});

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parse } from 'smol-toml';
import { AgentcellError } from '../src/errors.js';
import { editDiff, planAllowlistEdit } from '../src/policy/allowlist-edit.js';

/** `agentcell allow HOST…`'s edit of agentcell.toml: the file's other content stays byte for byte. */

const dir = mkdtempSync(join(tmpdir(), 'agentcell-allow-edit-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

function edit(text: string | undefined, hosts: string[]): ReturnType<typeof planAllowlistEdit> {
  const file = join(dir, `agentcell-${n++}.toml`);
  if (text !== undefined) writeFileSync(file, text);
  return planAllowlistEdit(file, hosts);
}

function allowOf(text: string): unknown {
  return (parse(text)['network'] as Record<string, unknown> | undefined)?.['allow'];
}

function refused(text: string | undefined, hosts: string[], code: string, message: RegExp): void {
  assert.throws(
    () => edit(text, hosts),
    (error: unknown) => error instanceof AgentcellError && error.code === code && message.test(error.message),
  );
}

describe('planAllowlistEdit', () => {
  it('makes a file with a [network] table when there is none', () => {
    const e = edit(undefined, ['api.example.com']);
    assert.equal(e.created, true);
    assert.equal(e.after, '[network]\nallow = ["api.example.com"]\n');
  });

  it('appends a [network] table after the rest, leaving comments and other tables alone', () => {
    const text = '# my project\n[cell]\nmode = "strict" # keep\n\n[[mount]]\nsource = "/data"\n';
    const e = edit(text, ['a.test']);
    assert.equal(e.after, `${text}\n[network]\nallow = ["a.test"]\n`);
    const noNewline = edit('[cell]\nmode = "strict"', ['a.test']);
    assert.equal(noNewline.after, '[cell]\nmode = "strict"\n\n[network]\nallow = ["a.test"]\n');
  });

  it('adds an allow line under an existing [network] without one', () => {
    const text = '[network] # egress\nmode = "allowlist"\n\n[[network.rule]]\nhost = "a.test"\n';
    const e = edit(text, ['b.test:8443']);
    assert.equal(
      e.after,
      '[network] # egress\nallow = ["b.test:8443"]\nmode = "allowlist"\n\n[[network.rule]]\nhost = "a.test"\n',
    );
  });

  it('extends a one-line array, and an empty one', () => {
    const text = '[network]\nmode = "allowlist"\nallow = ["a.test", "b.test"]   # team hosts\ndeny = ["x.a.test"]\n';
    const e = edit(text, ['c.test', '*.d.test']);
    assert.equal(
      e.after,
      '[network]\nmode = "allowlist"\nallow = ["a.test", "b.test", "c.test", "*.d.test"]   # team hosts\ndeny = ["x.a.test"]\n',
    );
    assert.equal(edit('[network]\nallow = []\n', ['a.test']).after, '[network]\nallow = ["a.test"]\n');
    assert.equal(
      edit('[network]\nallow = ["a.test", ]\n', ['b.test']).after,
      '[network]\nallow = ["a.test", "b.test"]\n',
    );
  });

  it('extends a multi-line array line by line, keeping its comments, indentation and commas right', () => {
    const trailing = '[network]\nallow = [\n    "a.test",  # first\n    "b.test",\n]\nmode = "allowlist"\n';
    assert.equal(
      edit(trailing, ['c.test']).after,
      '[network]\nallow = [\n    "a.test",  # first\n    "b.test",\n    "c.test",\n]\nmode = "allowlist"\n',
    );
    const bare = '[network]\nallow = [\n  "a.test"  # last, no comma\n]\n';
    assert.equal(edit(bare, ['b.test']).after, '[network]\nallow = [\n  "a.test",  # last, no comma\n  "b.test",\n]\n');
    const sameLine = '[network]\nallow = ["a.test",\n  "b.test"]\n';
    assert.equal(edit(sameLine, ['c.test']).after, '[network]\nallow = ["a.test",\n  "b.test",\n  "c.test",\n]\n');
    const empty = '[network]\nallow = [\n  # none yet\n]\n';
    assert.equal(edit(empty, ['a.test']).after, '[network]\nallow = [\n  # none yet\n  "a.test",\n]\n');
  });

  it('is not fooled by brackets, quotes and "allow" inside strings and comments', () => {
    const text = [
      '[network]',
      "# allow = ['commented.test']",
      'mode = "allowlist" # [not a header]',
      'allow = [ "a.test", # a ] in a comment',
      '  \'b.test\', "weird ] \\" string"]',
      '[env]',
      'NOTE = """',
      '[network]',
      'allow = ["inside.test"]',
      '"""',
      '',
    ].join('\n');
    // The weird string is not a host pattern: the edit itself is fine, the policy check refuses it.
    refused(text, ['c.test'], 'POLICY_INVALID', /network\.allow/);
    const valid = text.replace(' "weird ] \\" string"', ' "w.test"');
    const e = edit(valid, ['c.test']);
    assert.deepEqual(allowOf(e.after), ['a.test', 'b.test', 'w.test', 'c.test']);
    assert.equal(e.after.replace(',\n  "c.test",\n]', ']'), valid, 'only the array changed');
  });

  it('keeps CRLF line ends', () => {
    const e = edit('[network]\r\nallow = [\r\n  "a.test",\r\n]\r\n', ['b.test']);
    assert.equal(e.after, '[network]\r\nallow = [\r\n  "a.test",\r\n  "b.test",\r\n]\r\n');
  });

  it('skips entries already allowed (any case), and changes nothing when all are', () => {
    const text = '[network]\nallow = ["a.test", "b.test:443"]\n';
    const e = edit(text, ['A.TEST', 'c.test', 'c.test']);
    assert.deepEqual(e.added, ['c.test']);
    assert.deepEqual(e.present, ['a.test']);
    const none = edit(text, ['b.test:443']);
    assert.equal(none.after, text);
    assert.deepEqual(editDiff(none), []);
  });

  it('refuses what the policy refuses: a bare *, a public suffix, a bad port, nothing at all', () => {
    refused(undefined, ['*'], 'USAGE', /bare wildcard/);
    refused(undefined, ['ok.test', '*.com'], 'USAGE', /top-level domain/);
    refused(undefined, ['a.test:99999'], 'USAGE', /out of range/);
    refused(undefined, ['a.test/path'], 'USAGE', /give a host name, not a path: did you mean a\.test\?/);
    refused(undefined, [], 'USAGE', /at least one/);
  });

  it('refuses layouts it cannot edit exactly, and files that are not valid TOML or policy', () => {
    refused('network.mode = "allowlist"\n', ['a.test'], 'POLICY_INVALID', /by hand/);
    refused('network = { mode = "allowlist" }\n', ['a.test'], 'POLICY_INVALID', /by hand/);
    refused('[network\n', ['a.test'], 'POLICY_INVALID', /not valid TOML/);
    refused('[network]\nallow = "a.test"\n', ['b.test'], 'POLICY_INVALID', /array of strings/);
    refused('[network]\nallowed = ["a.test"]\n', ['b.test'], 'POLICY_INVALID', /unknown key/);
  });

  it('shows the change as a unified diff with context', () => {
    const e = edit('# top\n[cell]\nmode = "strict"\n[network]\nallow = [\n  "a.test",\n]\nmode = "allowlist"\n', [
      'b.test',
    ]);
    assert.deepEqual(editDiff(e).slice(2), [
      '@@ -5,4 +5,5 @@',
      ' allow = [',
      '   "a.test",',
      '+  "b.test",',
      ' ]',
      ' mode = "allowlist"',
    ]);
    assert.equal(editDiff(e)[0], `--- ${e.file}`);
    assert.deepEqual(editDiff(edit(undefined, ['a.test'])).slice(0, 1), ['--- /dev/null']);
  });

  it('refuses to edit a file holding a reserved name (__proto__), naming the key', () => {
    refused(
      '[env.__proto__]\npolluted = "x"\n',
      ['api.example.com'],
      'POLICY_INVALID',
      /key "env\.__proto__": "__proto__" is not allowed as a name here/,
    );
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  });
});

import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { toolVersion, versionNumber } from '../src/cell/tool-versions.js';

/**
 * Tool versions go into receipts and into the fingerprints receipts hash, so one binary
 * must always give the same answer: a `--version` that was too slow once (a loaded
 * machine) is not remembered as the binary's version.
 */
describe('tool versions', () => {
  let dir: string;
  let state: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'agentcell-tool-versions-'));
    state = join(dir, 'state');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** A tool on its own PATH whose first `--version` hangs (until killed), and later ones answer at once. */
  function slowOnce(name: string): NodeJS.ProcessEnv {
    const bin = join(dir, `bin-${name}`);
    const marker = join(dir, `${name}.answered-once`);
    const script = `#!/bin/sh\nif [ ! -e '${marker}' ]; then : > '${marker}'; exec sleep 30; fi\necho '${name} version 1.2.3'\n`;
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, name), script);
    chmodSync(join(bin, name), 0o755);
    return { PATH: bin };
  }

  it('a --version that timed out is unknown this time only; the next call asks again and remembers the answer', () => {
    const env = slowOnce('slowtool');
    const options = { env, parse: versionNumber, timeoutMs: 300 };
    assert.equal(toolVersion(state, 'slowtool', options), 'unknown');
    const cacheFile = join(state, 'tool-versions.json');
    const cached = (): Record<string, { version: string }> =>
      existsSync(cacheFile) ? (JSON.parse(readFileSync(cacheFile, 'utf8')) as Record<string, { version: string }>) : {};
    assert.equal(cached()['slowtool'], undefined, 'the timeout was not remembered');
    assert.equal(toolVersion(state, 'slowtool', options), '1.2.3');
    assert.equal(cached()['slowtool']?.version, '1.2.3');
    // Remembered: even a timeout too short to run it now gives the same answer.
    assert.equal(toolVersion(state, 'slowtool', { ...options, timeoutMs: 1 }), '1.2.3');
  });

  it('a tool that answers --version with a failure is remembered as unknown', () => {
    const bin = join(dir, 'bin-failing');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'failing'), '#!/bin/sh\nexit 3\n');
    chmodSync(join(bin, 'failing'), 0o755);
    assert.equal(toolVersion(state, 'failing', { env: { PATH: bin } }), 'unknown');
    const cache = JSON.parse(readFileSync(join(state, 'tool-versions.json'), 'utf8')) as Record<
      string,
      { version: string }
    >;
    assert.equal(cache['failing']?.version, 'unknown');
  });
});

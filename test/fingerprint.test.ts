import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { canonicalJson, sha256 } from '../src/_internal/canonical-hash.js';
import { fingerprintJsonSchema } from '../src/evidence/fingerprint-schema.js';
import type { Receipt } from '../src/index.js';
import { ac, acJson, makeSandbox, type Sandbox } from './helpers.js';
import { backendArgs, prepareBackend, TEST_BACKENDS } from './backends-under-test.js';

/** `agentcell fingerprint --json` against the JSON Schema the package ships, on every backend under test. */
const SHIPPED = join(import.meta.dirname, '..', '..', 'schemas', 'fingerprint.v1.json');
const shipped = JSON.parse(readFileSync(SHIPPED, 'utf8')) as Record<string, unknown>;
// Validated through the shipped file itself (zod reads JSON Schema), not the TypeScript schema it came from.
const validator = z.fromJSONSchema(shipped);

describe('fingerprint schema', () => {
  it('the shipped schema is the one the code generates (regenerate it: see docs/evidence.md)', () => {
    assert.deepEqual(shipped, JSON.parse(JSON.stringify(fingerprintJsonSchema())));
  });
});

for (const backend of TEST_BACKENDS) {
  describe(`fingerprint on ${backend}`, () => {
    let sb: Sandbox;
    before(() => {
      prepareBackend(backend);
      sb = makeSandbox({ 'README.md': 'hi\n' });
    });
    after(() => sb.cleanup());

    it('validates against schemas/fingerprint.v1.json, and receipts record its hash', () => {
      const fingerprint = acJson<Record<string, unknown>>(sb, 'fingerprint', ...backendArgs(backend), '--json');
      const valid = validator.safeParse(fingerprint);
      assert.ok(valid.success, `schema errors: ${JSON.stringify(valid.error?.issues)}`);
      assert.equal((fingerprint['backend'] as { name: string }).name, backend);
      // Negative controls: the schema refuses what it must.
      assert.equal(validator.safeParse({ ...fingerprint, extra: 1 }).success, false, 'unknown fields refused');
      const noHost = { ...fingerprint, host: undefined };
      assert.equal(validator.safeParse(noHost).success, false, 'a missing field refused');
      // A run with the same options records the same fingerprint's hash.
      const run = ac(sb, 'run', ...backendArgs(backend), '--', 'true');
      assert.equal(run.status, 0, run.stderr);
      const receipt = acJson<Receipt>(sb, 'receipt', 'show', '--latest', '--format', 'json');
      const again = acJson<Record<string, unknown>>(sb, 'fingerprint', ...backendArgs(backend), '--json');
      // On a mismatch, both fingerprints taken around the run say which field moved.
      const taken = `before the run: ${JSON.stringify(fingerprint)}\nafter it: ${JSON.stringify(again)}`;
      assert.equal(receipt.fingerprint, `sha256:${sha256(canonicalJson(again))}`, taken);
    });
  });
}

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { Ajv } from 'ajv';
import { parse } from 'smol-toml';
import { PROFILES, renderProfile } from '../src/policy/init-profiles.js';
import { policyJsonSchema, policySchemaUrl } from '../src/policy/policy-json-schema.js';
import { ac, makeSandbox } from './helpers.js';

describe('agentcell.toml JSON Schema', () => {
  const ajv = new Ajv({ strict: false, allErrors: true });
  const validate = ajv.compile(policyJsonSchema());

  for (const profile of PROFILES)
    it(`validates the ${profile} profile init writes`, () => {
      assert.equal(validate(parse(renderProfile(profile))), true, ajv.errorsText(validate.errors));
    });

  it('rejects a misspelt key and a value outside its choices, naming them', () => {
    assert.equal(validate(parse('[cell]\nbackend = "bwrap"\nbakend = "x"\n')), false);
    assert.match(ajv.errorsText(validate.errors), /additional properties/i);
    assert.match(JSON.stringify(validate.errors), /bakend/);
    assert.equal(validate(parse('[network]\nmode = "wide-open"\n')), false);
    assert.match(JSON.stringify(validate.errors), /\/network\/mode/);
  });

  it('rejects __proto__, constructor and prototype as names, as the loader does', () => {
    for (const text of [
      '[env]\nconstructor = "x"\n',
      '[env.__proto__]\npolluted = "x"\n',
      '[secrets.prototype]\nfrom = "env:X"\ninject = "env"\n',
      '[secrets.T]\nfrom = "env:X"\ninject = "env"\nenv = "__proto__"\n',
      '[network.resolve]\nconstructor = "10.0.0.1"\n',
    ])
      assert.equal(validate(parse(text)), false, text);
    assert.equal(validate(parse('[env]\nFOO = "x"\n[network.resolve]\n"a.example.com" = "10.0.0.1"\n')), true);
  });

  it('ships beside the package, matches the zod schema, and init points editors at it', () => {
    const url = policySchemaUrl();
    assert.ok(url, 'the built package has schemas/agentcell.schema.json');
    assert.deepEqual(JSON.parse(readFileSync(fileURLToPath(url), 'utf8')), policyJsonSchema());
    const sb = makeSandbox();
    try {
      const init = ac(sb, 'init', '--dry-run');
      assert.equal(init.status, 0, init.stderr);
      assert.equal(init.stdout.split('\n')[0], `#:schema ${url}`);
    } finally {
      sb.cleanup();
    }
  });
});

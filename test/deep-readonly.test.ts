import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deepFreeze, mutableCopy } from '../src/_internal/deep-readonly.js';

interface Data {
  rules: { allow: string[]; ports: number[] };
  inspect: { upstreamCa: string[]; secrets: { name: string; host: string; header: string | null }[] };
  hosts: Map<string, { address: string }>;
  seen: Date;
  pattern: RegExp;
  nothing: undefined;
}

test('mutableCopy: a deep, unfrozen, unshared copy of frozen plain data', () => {
  const original = deepFreeze<Data>({
    rules: { allow: ['a.test:443'], ports: [443, 8443] },
    inspect: { upstreamCa: ['-----BEGIN CERTIFICATE-----\n…'], secrets: [{ name: 'K', host: 'h', header: null }] },
    hosts: new Map([['h', { address: '127.0.0.1' }]]),
    seen: new Date(0),
    pattern: /x/g,
    nothing: undefined,
  });
  const copy = mutableCopy<Data>(original);
  assert.deepEqual(copy, original);
  assert.equal(Object.isFrozen(copy), false);
  assert.notEqual(copy.rules, original.rules);
  copy.rules.allow.push('b.test:443');
  copy.inspect.secrets[0]!.name = 'L';
  copy.hosts.get('h')!.address = '127.0.0.2';
  copy.pattern.lastIndex = 1; // a frozen RegExp would throw here
  assert.deepEqual(original.rules.allow, ['a.test:443']);
  assert.equal(original.inspect.secrets[0]!.name, 'K');
  assert.equal(original.hosts.get('h')!.address, '127.0.0.1');
  assert.ok(copy.seen instanceof Date && copy.seen.getTime() === 0);
  assert.ok('nothing' in copy);
});

import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { describe, it } from 'node:test';
import { ipFamily } from '../src/_internal/ip-family.js';

describe('ipFamily', () => {
  it("answers as node:net's isIP does, names and addresses alike", () => {
    const inputs = [
      ...['api.anthropic.com', 'localhost', 'a', '', ' ', '*.example.com', 'xn--bcher-kva.example', '1.2.3.com'],
      ...[
        '1.2.3.4',
        '0.0.0.0',
        '255.255.255.255',
        '256.1.1.1',
        '1.2.3',
        '1.2.3.4.5',
        '01.2.3.4',
        '1..2.3',
        '.',
        '1234',
      ],
      ...[
        '::',
        '::1',
        '[::1]',
        'fe80::1%eth0',
        '::ffff:1.2.3.4',
        '2001:db8::8a2e:370:7334',
        'a:b',
        ':',
        '1:2:3:4:5:6:7:8:9',
      ],
      ...['0x7f.1', '127.1', '１.２.３.４', '1.2.3.4 ', 'host:443', '1.2.3.4:443', '::1:443', 'a::b', '[::1]:443'],
    ];
    for (const input of inputs) assert.equal(ipFamily(input), isIP(input), JSON.stringify(input));
  });
});

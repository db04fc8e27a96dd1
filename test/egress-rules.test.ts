import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { canonicalAddress, classifyAddress, guardAddress } from '../src/egress/rules/address-guard.js';
import { compileHostRules, normalizeHost } from '../src/egress/rules/host-rules.js';
import {
  checkCredentials,
  checkProxyAuthorization,
  newProxyToken,
  proxyAuthorization,
} from '../src/egress/gateway/proxy-auth.js';
import { parseGreeting, parseRequest, parseUserPassword } from '../src/egress/protocols/socks5-messages.js';
import { classifyFirstBytes } from '../src/egress/protocols/classify-first-bytes.js';

describe('host rules', () => {
  const rules = compileHostRules({
    allow: ['example.com', '*.example.org', 'api.example.net:443', '10.0.0.5', '[::1]:8443', 'plain.example.com:80'],
    deny: ['bad.example.org', '10.0.0.5:22'],
    resolve: { 'Pinned.Example.com.': '::ffff:127.0.0.1' },
  });
  const decide = (host: string, port: number, cleartext = false): string => {
    const d = rules.decide(host, port, { cleartext });
    return `${d.decision} ${d.reason} ${d.rule ?? '-'}`;
  };

  it('matches names exactly, wildcards below the domain only, case and trailing dot ignored', () => {
    assert.equal(decide('example.com', 443), 'allow allow-rule example.com');
    assert.equal(decide('EXAMPLE.com.', 8080), 'allow allow-rule example.com', 'no port = any port');
    assert.equal(decide('www.example.com', 443), 'deny not-allowed -');
    assert.equal(decide('a.example.org', 443), 'allow allow-rule *.example.org');
    assert.equal(decide('a.b.example.org', 443), 'allow allow-rule *.example.org');
    assert.equal(decide('example.org', 443), 'deny not-allowed -', '*.x does not include the apex');
    assert.equal(decide('evilexample.org', 443), 'deny not-allowed -');
    assert.equal(decide('api.example.net', 443), 'allow allow-rule api.example.net:443');
    assert.equal(decide('api.example.net', 8443), 'deny not-allowed -');
  });

  it('lets deny win, and refuses junk hosts and ports', () => {
    assert.equal(decide('bad.example.org', 443), 'deny deny-rule bad.example.org');
    assert.equal(decide('10.0.0.5', 443), 'allow allow-rule 10.0.0.5');
    assert.equal(decide('10.0.0.5', 22), 'deny deny-rule 10.0.0.5:22');
    for (const host of [
      '',
      'a b.example.com',
      'x.example.org/..',
      'a..example.org',
      'x.example.org\0',
      '[example.com]',
    ])
      assert.equal(decide(host, 443), 'deny invalid-host -', JSON.stringify(host));
    assert.equal(decide('example.com', 0), 'deny invalid-host -');
    assert.equal(decide('example.com', 70000), 'deny invalid-host -');
  });

  it('matches IP entries in any spelling, never by name', () => {
    assert.equal(decide('::1', 8443), 'allow allow-rule [::1]:8443');
    assert.equal(decide('[0:0:0:0:0:0:0:1]', 8443), 'allow allow-rule [::1]:8443');
    assert.equal(decide('::ffff:10.0.0.5', 443), 'allow allow-rule 10.0.0.5');
    assert.equal(decide('::1', 443), 'deny not-allowed -');
  });

  it('needs an explicit port for cleartext HTTP', () => {
    assert.equal(decide('example.com', 80, true), 'deny cleartext-not-allowed example.com');
    assert.equal(decide('plain.example.com', 80, true), 'allow allow-rule plain.example.com:80');
    assert.equal(decide('plain.example.com', 443), 'deny not-allowed -', 'an explicit port is that port only');
  });

  it('lists addresses by allow entry (port-aware) or by the resolve override of that name only', () => {
    assert.equal(rules.resolveOverride('pinned.example.com'), '127.0.0.1');
    assert.equal(rules.listsAddress('127.0.0.1', 443, 'pinned.example.com'), true);
    assert.equal(rules.listsAddress('127.0.0.1', 443, 'example.com'), false);
    assert.equal(rules.listsAddress('::ffff:10.0.0.5', 443), true);
    assert.equal(rules.listsAddress('::1', 8443), true);
    assert.equal(rules.listsAddress('::1', 443), false);
    assert.deepEqual(rules.denyForAddress('10.0.0.5', 22), {
      decision: 'deny',
      rule: '10.0.0.5:22',
      reason: 'deny-rule',
    });
    assert.equal(rules.denyForAddress('10.0.0.5', 443), undefined);
  });

  it('refuses patterns the policy refuses, and bad resolve entries', () => {
    for (const pattern of ['*', '*.com', 'exa mple.com', 'example.com:0'])
      assert.throws(() => compileHostRules({ allow: [pattern] }), { code: 'POLICY_INVALID' }, pattern);
    assert.throws(() => compileHostRules({ resolve: { 'a.example': 'nope' } }), { code: 'POLICY_INVALID' });
    assert.throws(() => compileHostRules({ resolve: { '1.2.3.4': '1.2.3.4' } }), { code: 'POLICY_INVALID' });
  });

  it('normalizes hosts', () => {
    assert.equal(normalizeHost('WWW.Example.COM.'), 'www.example.com');
    assert.equal(normalizeHost('[::FFFF:7F00:1]'), '127.0.0.1');
    assert.equal(normalizeHost('2001:DB8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
    assert.equal(normalizeHost('a'.repeat(64) + '.com'), undefined);
  });
});

describe('address guard', () => {
  const cases: [string, string][] = [
    ['93.184.216.34', 'public'],
    ['8.8.8.8', 'public'],
    ['127.0.0.1', 'loopback'],
    ['127.255.0.9', 'loopback'],
    ['::1', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['172.32.0.1', 'public'],
    ['192.168.1.1', 'private'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['169.254.1.1', 'link-local'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['100.64.0.1', 'cgnat'],
    ['100.127.255.255', 'cgnat'],
    ['100.128.0.1', 'public'],
    ['169.254.169.254', 'metadata'],
    ['fd00:ec2::254', 'metadata'],
    ['0.0.0.0', 'unspecified'],
    ['::', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['ff02::1', 'multicast'],
    ['255.255.255.255', 'reserved'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:169.254.169.254', 'metadata'],
    ['::ffff:8.8.8.8', 'public'],
    ['64:ff9b::10.0.0.1', 'private'],
    ['2002:c0a8:0101::1', 'private'], // 6to4 of 192.168.1.1
    ['2001:db8::1', 'reserved'],
    ['2606:4700::1111', 'public'],
    ['not-an-ip', 'reserved'],
    // Every IPv6 spelling that reaches an IPv4 address is judged by that address.
    ['::ffff:0.0.0.0', 'unspecified'],
    ['::ffff:100.64.0.1', 'cgnat'],
    ['::ffff:e000:1', 'multicast'],
    ['64:ff9b::7f00:1', 'loopback'],
    ['64:ff9b::169.254.169.254', 'metadata'],
    ['64:ff9b::100.64.0.1', 'cgnat'],
    ['64:ff9b::0.0.0.0', 'unspecified'],
    ['64:ff9b::224.0.0.1', 'multicast'],
    ['64:ff9b::8.8.8.8', 'public'],
    ['2002:7f00:1::', 'loopback'],
    ['2002:a9fe:a9fe::1', 'metadata'],
    ['2002:6440:1::', 'cgnat'],
    ['2002:808:808::1', 'public'],
    ['64:ff9b:1::a00:1', 'private'], // local-use NAT64
    ['::127.0.0.1', 'reserved'], // IPv4-compatible: deprecated, nothing to connect to
    ['::2', 'reserved'],
    ['0.1.2.3', 'unspecified'],
    ['100.100.100.200', 'metadata'], // Alibaba Cloud
    ['239.255.255.250', 'multicast'],
    ['ff05::1:3', 'multicast'],
    ['fec0::1', 'private'],
    ['192.88.99.1', 'reserved'],
    ['198.18.0.1', 'reserved'],
    ['3fff::1', 'reserved'],
    ['2001::1', 'reserved'], // Teredo
    ['5f00::1', 'reserved'], // outside 2000::/3
    ['1.2.3.4%eth0', 'reserved'], // a zone on IPv4 is no address
  ];
  for (const [ip, expected] of cases) it(`${ip} is ${expected}`, () => assert.equal(classifyAddress(ip), expected));

  it('allows non-public addresses only when listed, checking the canonical form', () => {
    const seen: string[] = [];
    const listed = (address: string): boolean => {
      seen.push(address);
      return address === '127.0.0.1';
    };
    assert.deepEqual(guardAddress('::ffff:127.0.0.1', listed), {
      address: '127.0.0.1',
      class: 'loopback',
      allowed: true,
    });
    assert.deepEqual(guardAddress('10.0.0.1', listed), { address: '10.0.0.1', class: 'private', allowed: false });
    assert.deepEqual(guardAddress('8.8.8.8', listed), { address: '8.8.8.8', class: 'public', allowed: true });
    assert.deepEqual(seen, ['127.0.0.1', '10.0.0.1']);
    assert.equal(guardAddress('localhost', () => true).allowed, false);
  });

  it('writes one canonical spelling', () => {
    assert.equal(canonicalAddress('0:0:0:0:0:0:0:1'), '::1');
    assert.equal(canonicalAddress('2001:0db8:0000:0000:0001:0000:0000:0001'), '2001:db8::1:0:0:1');
    assert.equal(canonicalAddress('[::ffff:10.0.0.1]'), '10.0.0.1');
    assert.equal(canonicalAddress('1:0:0:2:0:0:0:3'), '1:0:0:2::3');
    assert.equal(canonicalAddress('1:2:3:4:5:6:7:8'), '1:2:3:4:5:6:7:8');
    assert.equal(canonicalAddress('example.com'), undefined);
    assert.equal(canonicalAddress('127.1'), undefined);
    assert.equal(canonicalAddress('::FFFF:7F00:1'), '127.0.0.1');
    assert.equal(canonicalAddress('FE80::1%ETH0'), 'fe80::1%eth0');
    assert.equal(canonicalAddress('0:0:0:0:0:0:0:0'), '::');
    assert.equal(canonicalAddress('64:ff9b::7f00:1'), '64:ff9b::7f00:1');
  });
});

/** The first flight of a real TLS client (node's OpenSSL), captured on loopback. */
function captureClientHello(servername: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server: Server = createServer((socket) => {
      let data = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        data = Buffer.concat([data, chunk]);
        if (data.length >= 5 && data.length >= 5 + data.readUInt16BE(3)) {
          socket.destroy();
          server.close();
          resolve(data);
        }
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      const client = tlsConnect({ host: '127.0.0.1', port, servername });
      client.on('error', () => undefined);
    });
    server.on('error', reject);
  });
}

describe('first bytes in a tunnel', () => {
  it('reads the SNI of a real ClientHello, and asks for more until it is whole', async () => {
    const hello = await captureClientHello('api.Example.com');
    assert.deepEqual(classifyFirstBytes(hello), { kind: 'tls', sni: 'api.Example.com' });
    for (let cut = 1; cut < hello.length; cut += 37)
      assert.deepEqual(classifyFirstBytes(hello.subarray(0, cut)), { kind: 'more' }, `cut at ${cut}`);
    const withoutSni = await captureClientHello('');
    assert.deepEqual(classifyFirstBytes(withoutSni), { kind: 'tls', sni: undefined });
  });

  it('reassembles a ClientHello fragmented over two records', async () => {
    const hello = await captureClientHello('frag.example.com');
    const body = hello.subarray(5);
    const record = (part: Buffer): Buffer => {
      const header = Buffer.from([0x16, 0x03, 0x01, 0, 0]);
      header.writeUInt16BE(part.length, 3);
      return Buffer.concat([header, part]);
    };
    const split = Buffer.concat([record(body.subarray(0, 50)), record(body.subarray(50))]);
    assert.deepEqual(classifyFirstBytes(split.subarray(0, 60)), { kind: 'more' });
    assert.deepEqual(classifyFirstBytes(split), { kind: 'tls', sni: 'frag.example.com' });
  });

  it('refuses to guess: anything starting as a TLS handshake that is no readable ClientHello', async () => {
    const unreadable = { kind: 'tls-unreadable' };
    const serverHello = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0, 0, 0]);
    assert.deepEqual(classifyFirstBytes(serverHello), unreadable);
    assert.deepEqual(classifyFirstBytes(Buffer.from([0x16, 0x02, 0x00, 0x00, 0x04, 0x01, 0, 0, 0])), unreadable);
    const hello = Buffer.from(await captureClientHello('ok.example.com'));
    hello[5 + 4 + 2 + 32] = 0xff; // session id length beyond the message
    assert.deepEqual(classifyFirstBytes(hello), unreadable);
    const huge = Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff]);
    assert.deepEqual(classifyFirstBytes(Buffer.concat([huge, Buffer.alloc(70 * 1024)])), unreadable);
  });

  it('tells cleartext HTTP from other protocols', () => {
    const text = (s: string) => classifyFirstBytes(Buffer.from(s));
    assert.deepEqual(text('GET / HTTP/1.1\r\n'), { kind: 'http', method: 'GET' });
    assert.deepEqual(text('POS'), { kind: 'more' });
    assert.deepEqual(text('SSH-2.0-OpenSSH_9.2\r\n'), { kind: 'other' });
    assert.deepEqual(text('\x00\x01'), { kind: 'other' });
    assert.deepEqual(text('\r\n\r\nPUT /x HTTP/1.1\r\n'), { kind: 'http', method: 'PUT' }, 'leading empty lines');
    assert.deepEqual(text('\r\n'), { kind: 'more' });
  });
});

describe('SOCKS5 messages', () => {
  it('parses greeting, credentials and requests, asking for more on short input', () => {
    assert.deepEqual(parseGreeting(Buffer.from([5, 2, 0, 2])), { value: [0, 2], used: 4 });
    assert.equal(parseGreeting(Buffer.from([5, 2, 0])), 'more');
    assert.equal(parseGreeting(Buffer.from([4, 1, 0])), 'invalid');
    const auth = Buffer.concat([Buffer.from([1, 2]), Buffer.from('ab'), Buffer.from([3]), Buffer.from('xyz')]);
    assert.deepEqual(parseUserPassword(auth), { value: { user: 'ab', password: 'xyz' }, used: 8 });
    assert.equal(parseUserPassword(auth.subarray(0, 7)), 'more');
    const name = Buffer.concat([Buffer.from([5, 1, 0, 3, 11]), Buffer.from('example.com'), Buffer.from([1, 187, 9])]);
    assert.deepEqual(parseRequest(name), { value: { command: 1, host: 'example.com', port: 443 }, used: 18 });
    assert.deepEqual(parseRequest(Buffer.from([5, 1, 0, 1, 10, 0, 0, 5, 0, 22])), {
      value: { command: 1, host: '10.0.0.5', port: 22 },
      used: 10,
    });
    const v6 = Buffer.concat([Buffer.from([5, 1, 0, 4]), Buffer.alloc(15), Buffer.from([1, 0x20, 0xfb])]);
    assert.deepEqual(parseRequest(v6), { value: { command: 1, host: '0:0:0:0:0:0:0:1', port: 8443 }, used: 22 });
    assert.equal(parseRequest(name.subarray(0, 10)), 'more');
  });
});

describe('proxy token', () => {
  it('accepts agentcell:TOKEN only', () => {
    const token = newProxyToken();
    assert.match(token, /^[A-Za-z0-9_-]{32}$/);
    assert.equal(checkProxyAuthorization(proxyAuthorization(token), token), 'ok');
    assert.equal(checkProxyAuthorization(undefined, token), 'proxy-auth-required');
    assert.equal(checkProxyAuthorization(proxyAuthorization('other'), token), 'proxy-auth-invalid');
    assert.equal(checkProxyAuthorization(`Bearer ${token}`, token), 'proxy-auth-invalid');
    const otherUser = `Basic ${Buffer.from(`root:${token}`).toString('base64')}`;
    assert.equal(checkProxyAuthorization(otherUser, token), 'proxy-auth-invalid');
    assert.equal(checkCredentials('agentcell', token, token), 'ok');
    assert.equal(checkCredentials('agentcell', `${token}x`, token), 'proxy-auth-invalid');
  });
});

import { describe, expect, it } from 'vitest';
import { createOutboundPolicy } from '../../src/utils/ssrfGuard.js';

/** Pure classification: no sockets, no DNS. */
const closedPolicy = createOutboundPolicy({ allow: [] });

describe('address classification', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['10.0.0.1', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['169.254.1.1', 'link-local'],
    ['169.254.169.254', 'metadata'],
    ['168.63.129.16', 'metadata'],
    ['100.64.0.1', 'carrier-grade NAT'],
    ['100.127.255.255', 'carrier-grade NAT'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['240.0.0.1', 'reserved'],
    ['192.0.2.1', 'reserved'],
    ['198.18.0.1', 'reserved'],
    ['0177.0.0.1', 'loopback'],
    ['0x7f000001', 'loopback'],
    ['0x7f.0.0.1', 'loopback'],
    ['2130706433', 'loopback'],
    ['127.1', 'loopback'],
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['fc00::1', 'unique-local'],
    ['fd12:3456::1', 'unique-local'],
    ['fd00:ec2::254', 'metadata'],
    ['ff02::1', 'multicast'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:169.254.169.254', 'metadata'],
    ['::127.0.0.1', 'IPv4-compatible'],
    ['::7f00:1', 'IPv4-compatible'],
    ['2002:7f00:1::', '6to4 address embedding 127.0.0.1'],
    ['2002:a00:1::1', '6to4 address embedding 10.0.0.1'],
    ['2002:a9fe:a9fe::', 'metadata'],
    ['64:ff9b::7f00:1', 'NAT64 address embedding 127.0.0.1'],
    ['64:ff9b::10.0.0.1', 'NAT64 address embedding 10.0.0.1'],
    ['64:ff9b::a9fe:a9fe', 'metadata'],
    ['64:ff9b:1::a00:1', 'NAT64 address embedding 10.0.0.1'],
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'Teredo'],
    ['2001:db8::1', 'reserved'],
    ['not-an-ip', 'not an IP address'],
    ['', 'not an IP address'],
  ])('refuses %s (%s)', (ip, reason) => {
    const verdict = closedPolicy.classify(ip);
    expect(verdict.allowed).toBe(false);
    expect(verdict.reason).toContain(reason);
  });

  it.each(['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1'])(
    'admits the public address %s',
    (ip) => {
      expect(closedPolicy.classify(ip)).toEqual({ allowed: true });
    },
  );

  it('admits private addresses inside the operator allow-list, and only those', () => {
    const policy = createOutboundPolicy({ allow: [' 10.0.0.0/8 ', 'fd00::/8', '', '192.168.5.7'] });
    expect(policy.classify('10.1.2.3').allowed).toBe(true);
    expect(policy.classify('::ffff:10.1.2.3').allowed).toBe(true);
    expect(policy.classify('fd12::1').allowed).toBe(true);
    expect(policy.classify('192.168.5.7').allowed).toBe(true);
    expect(policy.classify('192.168.5.8').allowed).toBe(false);
    expect(policy.classify('127.0.0.1').allowed).toBe(false);
    expect(policy.classify('fc00::1').allowed).toBe(false);
  });

  it('admits a metadata address only when the allow-list names it exactly', () => {
    const broad = createOutboundPolicy({ allow: ['169.254.0.0/16', 'fd00::/8'] });
    expect(broad.classify('169.254.1.1').allowed).toBe(true);
    expect(broad.classify('169.254.169.254').allowed).toBe(false);
    expect(broad.classify('fd00:ec2::254').allowed).toBe(false);
    expect(createOutboundPolicy({ allow: ['169.254.169.254'] }).classify('169.254.169.254').allowed).toBe(true);
    expect(createOutboundPolicy({ allow: ['169.254.169.254/32'] }).classify('169.254.169.254').allowed).toBe(true);
  });

  it.each(['10.0.0.0/33', 'nonsense', '10.0.0.0/8/8', 'example.com'])('rejects the allow-list entry %s at start', (entry) => {
    expect(() => createOutboundPolicy({ allow: [entry] })).toThrow(/not an IP address or CIDR/);
  });
});

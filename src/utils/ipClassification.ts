/**
 * Address classification for the SSRF guard: which IP addresses outbound HTTP may dial. Pure: no
 * I/O. Range tables come from `ipaddr.js` (which also reads octal, hex and integer IPv4 forms the
 * way `inet_aton` and the URL parser do) and allow-list membership from Node's `net.BlockList`.
 */
import net from 'node:net';
import ipaddr from 'ipaddr.js';

export interface AddressVerdict {
  allowed: boolean;
  /** Why the address is refused; absent when allowed. */
  reason?: string;
}

/** Well-known cloud metadata endpoints; admitted only by an allow-list entry naming the exact address. */
const METADATA_ADDRESSES = new Set([
  '169.254.169.254', // AWS, GCP, Azure, OpenStack, DigitalOcean …
  '169.254.170.2', // AWS ECS task credentials
  '169.254.170.23', // AWS EKS pod identity
  '100.100.100.200', // Alibaba Cloud
  '168.63.129.16', // Azure wire server: a public address, hence listed explicitly
  'fd00:ec2::254', // AWS IPv6 metadata
  'fd00:ec2::23', // AWS EKS pod identity over IPv6
]);

const RANGE_DESCRIPTIONS: Readonly<Record<string, string>> = {
  unspecified: 'an unspecified address',
  broadcast: 'the broadcast address',
  multicast: 'a multicast address',
  linkLocal: 'a link-local address',
  loopback: 'a loopback address',
  carrierGradeNat: 'a carrier-grade NAT address (100.64.0.0/10)',
  private: 'a private address (RFC 1918)',
  uniqueLocal: 'a unique-local address (fc00::/7)',
  teredo: 'a Teredo tunnel address',
  rfc6145: 'an IPv4-translated address',
  ipv4Compatible: 'an IPv4-compatible address (deprecated)',
};

type Address = ipaddr.IPv4 | ipaddr.IPv6;

export interface Inspection extends AddressVerdict {
  /** The address as the socket dials it: IPv4-mapped forms become plain IPv4. */
  dialled: string;
  family: 4 | 6;
}

function describeRange(range: string): string {
  return RANGE_DESCRIPTIONS[range] ?? `a reserved address (${range})`;
}

function withoutZone(address: Address): Address {
  return address.kind() === 'ipv6' ? ipaddr.fromByteArray(address.toByteArray()) : address;
}

/** The IPv4 address a translation or tunnelling form carries, which is what ends up reached. */
function embeddedIpv4(address: ipaddr.IPv6, range: string): Address | null {
  const bytes = address.toByteArray();
  if (range === 'rfc6052') return ipaddr.fromByteArray(bytes.slice(12, 16)); // NAT64: the last 32 bits
  if (range === '6to4') return ipaddr.fromByteArray(bytes.slice(2, 6)); // 2002:AABB:CCDD::
  return null;
}

/** Why an address may never be dialled by default, or null for a public unicast address. */
function intrinsicRefusal(address: Address): string | null {
  if (address.kind() === 'ipv4') {
    const range = address.range();
    return range === 'unicast' ? null : describeRange(range);
  }
  const v6 = address as ipaddr.IPv6;
  const range = v6.range();
  if (range === 'unicast') {
    const compatible = v6.parts.slice(0, 6).every((part) => part === 0);
    return compatible ? describeRange('ipv4Compatible') : null;
  }
  const inner = embeddedIpv4(v6, range);
  if (inner === null) return describeRange(range);
  const innerRefusal = intrinsicRefusal(inner);
  const label = range === '6to4' ? 'a 6to4 address' : 'a NAT64 address';
  return innerRefusal === null ? null : `${label} embedding ${inner.toString()}, ${innerRefusal}`;
}

function isMetadata(address: Address): boolean {
  if (METADATA_ADDRESSES.has(address.toString())) return true;
  if (address.kind() === 'ipv4') return false;
  const inner = embeddedIpv4(address as ipaddr.IPv6, (address as ipaddr.IPv6).range());
  return inner !== null && METADATA_ADDRESSES.has(inner.toString());
}

export interface AllowList {
  subnets: net.BlockList;
  /** Entries naming one address, the only way to admit a metadata endpoint. */
  exact: Set<string>;
}

/** Parses `JOBLINE_OUTBOUND_ALLOW` entries; throws on one that is not an address or CIDR. */
export function parseAllowList(entries: readonly string[]): AllowList {
  const subnets = new net.BlockList();
  const exact = new Set<string>();
  for (const raw of entries) {
    const entry = raw.trim();
    if (entry === '') continue;
    let network: Address;
    let prefix: number;
    try {
      [network, prefix] = entry.includes('/') ? ipaddr.parseCIDR(entry) : [ipaddr.parse(entry), -1];
    } catch {
      throw new Error(`Outbound allow-list entry '${entry}' is not an IP address or CIDR.`);
    }
    network = withoutZone(network);
    const bits = network.kind() === 'ipv4' ? 32 : 128;
    if (prefix < 0) prefix = bits;
    subnets.addSubnet(network.toString(), prefix, network.kind());
    if (prefix === bits) exact.add(network.toString());
  }
  return { subnets, exact };
}

function parseAddress(text: string): Address {
  const trimmed = text.trim();
  const bare = trimmed.split('%')[0] ?? '';
  // ipaddr.js reads '::a.b.c.d' as IPv4-mapped, but a socket dials it as IPv4-compatible
  // (::7f00:1): canonicalise IPv6 with the URL parser first so both agree. Zones do not matter here.
  return net.isIPv6(bare) ? ipaddr.parse(new URL(`http://[${bare}]/`).hostname.slice(1, -1)) : ipaddr.parse(trimmed);
}

/** Judges one address against the built-in refusals and the operator's allow-list. */
export function inspectAddress(ip: string, allow: AllowList): Inspection {
  let parsed: Address;
  try {
    parsed = parseAddress(ip);
  } catch {
    return { allowed: false, reason: `'${ip}' is not an IP address`, dialled: ip, family: 4 };
  }
  // A mapped address is dialled as the IPv4 address it carries, so it is judged as one.
  const v6 = parsed.kind() === 'ipv6' ? (parsed as ipaddr.IPv6) : null;
  const address = v6?.isIPv4MappedAddress() ? v6.toIPv4Address() : parsed;
  const dialled = address.toString();
  const family = address.kind() === 'ipv4' ? 4 : 6;
  const refuse = (why: string): Inspection => ({ allowed: false, reason: `${ip} is ${why}`, dialled, family });
  if (isMetadata(address)) {
    return allow.exact.has(dialled) ? { allowed: true, dialled, family } : refuse('a cloud metadata address');
  }
  if (allow.subnets.check(dialled, address.kind())) return { allowed: true, dialled, family };
  const refusal = intrinsicRefusal(address);
  return refusal === null ? { allowed: true, dialled, family } : refuse(refusal);
}

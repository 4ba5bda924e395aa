import { isIP } from 'node:net';

/**
 * The network an address belongs to, as sessions remember it: the IPv4 /24 or the IPv6 /48 (an IPv4-mapped IPv6
 * address counts as IPv4). Undefined for anything that is not an IP address.
 */
export function networkOf(address: string): string | undefined {
  const v4 = /^(?:::ffff:)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.\d{1,3}$/i.exec(address);
  if (v4 !== null && isIP(address.replace(/^::ffff:/i, '')) === 4) return `${v4[1]}.${v4[2]}.${v4[3]}.0/24`;
  if (isIP(address) !== 6) return undefined;
  const [head = '', tail = ''] = address.toLowerCase().split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = address.includes('::')
    ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
    : left;
  return `${groups
    .slice(0, 3)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/48`;
}

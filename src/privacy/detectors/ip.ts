import { isIPv4, isIPv6 } from 'node:net';
import { charClass, definePending, makeFinding, scanRegex } from '../scan.ts';
import type { Detector, Finding } from '../types.ts';

/**
 * IP addresses. The regexes only find bounded candidates; `node:net` decides validity, so octet ranges,
 * leading zeros and IPv6 compression rules are not re-implemented here.
 */
const IPV4 = /(?<![\w.-])(?:\d{1,3}\.){3}\d{1,3}(?![\w-]|\.\d)/g;

/** Hex groups and colons, optionally ending in a dotted IPv4 tail (`::ffff:192.0.2.1`). */
const IPV6 = /(?<![\w:.])[0-9A-Fa-f:]{2,39}(?:\.\d{1,3}){0,3}(?![\w:]|\.\d)/g;

export function ipv4Detector(): Detector {
  const re = new RegExp(IPV4.source, 'g');
  const self: Detector = {
    id: 'ipv4',
    entity: 'IP_ADDRESS',
    maxLength: 18,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) =>
        isIPv4(m[0])
          ? makeFinding(self, m.index, m.index + m[0].length, 0.65, {
              method: 'node-net',
              strength: 'structure',
              detail: 'ipv4',
            })
          : undefined,
      );
    },
    pendingFrom: definePending({
      isStart: charClass('0-9'),
      isPart: charClass('0-9.'),
      lookahead: 1,
      maxLength: 18,
    }),
  };
  return self;
}

function countHexDigits(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) if (/[0-9A-Fa-f]/.test(s.charAt(i))) n++;
  return n;
}

/**
 * Rejects strings that parse as IPv6 but are far more likely something else in prose: `a::b`-style C++
 * scopes, short `12::30` fragments. A real address in text carries a digit and several hex digits.
 */
function plausibleIPv6(s: string): boolean {
  return /\d/.test(s) && countHexDigits(s) >= 5 && (s.includes('::') || s.split(':').length >= 8);
}

export function ipv6Detector(): Detector {
  const re = new RegExp(IPV6.source, 'g');
  const maxLength = 56;
  const self: Detector = {
    id: 'ipv6',
    entity: 'IP_ADDRESS',
    maxLength,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) => {
        let candidate = m[0];
        // A colon that ends a sentence clause ("at fe80::1: retry") is punctuation, not part of the address.
        if (!isIPv6(candidate) && candidate.endsWith(':') && !candidate.endsWith('::')) {
          candidate = candidate.slice(0, -1);
        }
        if (!isIPv6(candidate) || !plausibleIPv6(candidate)) return undefined;
        return makeFinding(self, m.index, m.index + candidate.length, 0.7, {
          method: 'node-net',
          strength: 'structure',
          detail: 'ipv6',
        });
      });
    },
    pendingFrom: definePending({
      isStart: charClass('0-9A-Fa-f:'),
      isPart: charClass('0-9A-Fa-f:.'),
      lookahead: 1,
      maxLength,
    }),
  };
  return self;
}

import { base58CheckDecode, eip55Checksum, segwitDecode } from '../checksums.ts';
import { charClass, definePending, makeFinding, scanRegex } from '../scan.ts';
import type { Detector, Finding } from '../types.ts';

/**
 * Bitcoin addresses: legacy P2PKH (`1…`) and P2SH (`3…`) in Base58Check, whose 32-bit double-SHA-256
 * checksum makes a random match practically impossible, and segwit v0-v16 in bech32/bech32m (BIP-173,
 * BIP-350), mainnet `bc` and testnet `tb`.
 */
const BITCOIN =
  /(?<![A-Za-z0-9])(?:[13][1-9A-HJ-NP-Za-km-z]{25,34}|(?:bc|tb)1[02-9ac-hj-np-z]{8,87}|(?:BC|TB)1[02-9AC-HJ-NP-Z]{8,87})(?![A-Za-z0-9])/g;

export function bitcoinDetector(): Detector {
  const re = new RegExp(BITCOIN.source, 'g');
  const maxLength = 92;
  const self: Detector = {
    id: 'bitcoin',
    entity: 'CRYPTO_ADDRESS',
    maxLength,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) => {
        const s = m[0];
        const end = m.index + s.length;
        if (s.startsWith('1') || s.startsWith('3')) {
          const payload = base58CheckDecode(s);
          const version = payload?.[0];
          if (payload?.length !== 21 || (version !== 0x00 && version !== 0x05)) return undefined;
          return makeFinding(self, m.index, end, 0.95, {
            method: 'base58check',
            strength: 'checksum',
            detail: version === 0 ? 'p2pkh' : 'p2sh',
          });
        }
        const segwit = segwitDecode(s);
        if (segwit === undefined) return undefined;
        return makeFinding(self, m.index, end, 0.95, {
          method: segwit.encoding,
          strength: 'checksum',
          detail: `segwit-v${segwit.version}`,
        });
      });
    },
    pendingFrom: definePending({
      isStart: charClass('13bctBCT'),
      isPart: charClass('A-Za-z0-9'),
      lookahead: 0,
      maxLength,
    }),
  };
  return self;
}

/**
 * Ethereum addresses: `0x` and 40 hex digits. EIP-55 encodes a Keccak-256 checksum in the letter case, so
 * a mixed-case address is verified and one that fails is rejected (wallets refuse it too). An all-lower or
 * all-upper address carries no checksum and is reported at a lower confidence.
 */
const ETHEREUM = /(?<![A-Za-z0-9])0x[0-9a-fA-F]{40}(?![A-Za-z0-9])/g;

export function ethereumDetector(): Detector {
  const re = new RegExp(ETHEREUM.source, 'g');
  const self: Detector = {
    id: 'ethereum',
    entity: 'CRYPTO_ADDRESS',
    maxLength: 43,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) => {
        const body = m[0].slice(2);
        const end = m.index + m[0].length;
        if (/[a-f]/.test(body) && /[A-F]/.test(body)) {
          if (eip55Checksum(body) !== body) return undefined;
          return makeFinding(self, m.index, end, 0.95, { method: 'eip55', strength: 'checksum' });
        }
        return makeFinding(self, m.index, end, 0.75, { method: 'hex-format', strength: 'structure' });
      });
    },
    pendingFrom: definePending({
      isStart: charClass('0'),
      isPart: charClass('0-9a-fA-Fx'),
      lookahead: 0,
      maxLength: 43,
    }),
  };
  return self;
}

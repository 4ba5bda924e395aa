import { makeFinding, scanRegex } from '../scan.ts';
import type { Detector, Finding } from '../types.ts';

/**
 * PEM / OpenSSH / PGP private key blocks. The whole block is one finding, header to footer, so redaction
 * removes the key material and not just the label. Line breaks may be real or JSON-escaped (`\n` inside a
 * string), as keys often appear in config snippets. A block without its footer (a truncated output) still
 * matches through its last base64 line. Bounds: up to 4 armor headers and 64 body lines of at most 80
 * characters, which covers RSA-4096 in PKCS#1 and PKCS#8.
 */
const NL = '(?:\\r?\\n|(?:\\\\r)?\\\\n)';
const LABEL = '(?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)?-----';
const PEM_SOURCE =
  `-----BEGIN ${LABEL}` +
  `(?:${NL}[A-Za-z][A-Za-z-]{0,30}: [^\\r\\n\\\\]{0,100}){0,4}` +
  `(?:${NL}(?=${NL}))?` +
  `(?:${NL}[A-Za-z0-9+/=]{1,80}){0,64}` +
  `(${NL}-----END ${LABEL})?`;

const MARKER = '-----BEGIN ';
/** What a failed attempt can examine: the marker and the longest label. */
const HEADER_SPAN = MARKER.length + 3 * 21 + 'PRIVATE KEY BLOCK-----'.length;
/** What an attempt that matched without a footer may have examined past its end, trying one more line. */
const TRAILING_SPAN = 4 + 32 + 2 + 100;

export function privateKeyDetector(): Detector {
  const re = new RegExp(PEM_SOURCE, 'g');
  const sticky = new RegExp(PEM_SOURCE, 'y');
  const maxLength = HEADER_SPAN + 4 * 140 + 4 + 64 * 84 + 4 + HEADER_SPAN + TRAILING_SPAN;
  const self: Detector = {
    id: 'private-key',
    entity: 'PRIVATE_KEY',
    maxLength,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) =>
        makeFinding(self, m.index, m.index + m[0].length, 0.99, {
          method: 'pem-armor',
          strength: 'structure',
          detail: m[1] === undefined ? 'truncated' : 'complete',
        }),
      );
    },
    // Attempts can only start at a BEGIN marker, so only markers near the end (or a partial marker at the
    // very end) can still change; re-running the attempt tells how far it looked.
    pendingFrom(text: string): number {
      const n = text.length;
      for (let k = Math.min(MARKER.length - 1, n); k > 0; k--) {
        if (MARKER.startsWith(text.slice(n - k))) return scanMarkers(text, Math.max(0, n - maxLength), n - k);
      }
      return scanMarkers(text, Math.max(0, n - maxLength), n);
    },
  };

  function scanMarkers(text: string, lo: number, fallback: number): number {
    for (let i = text.indexOf(MARKER, lo); i !== -1 && i < fallback; i = text.indexOf(MARKER, i + 1)) {
      sticky.lastIndex = i;
      const m = sticky.exec(text);
      const examinedTo =
        m === null
          ? i + HEADER_SPAN
          : m[1] === undefined
            ? m.index + m[0].length + TRAILING_SPAN
            : m.index + m[0].length;
      if (examinedTo >= text.length) return i;
    }
    return fallback;
  }
  return self;
}

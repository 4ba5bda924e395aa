import { KmsDecryptionError } from './errors.ts';
import { KEY_NAME_PATTERN } from './types.ts';

/**
 * KMS ciphertexts are self-describing strings: `warden:v1:<key name>:<version>:<base64url(nonce || ciphertext ||
 * tag)>`. The key name and version are also bound into the AEAD's additional data (with the caller's context),
 * so a ciphertext moved under another name or version does not decrypt.
 */
const PREFIX = 'warden:v1:';
const MAX_CIPHERTEXT_CHARS = 1024 * 1024;

export interface ParsedCiphertext {
  readonly keyName: string;
  readonly version: number;
  readonly sealed: Buffer;
}

export function formatCiphertext(keyName: string, version: number, sealed: Uint8Array): string {
  // A view, not a copy: the sealed bytes are only read.
  const bytes = Buffer.isBuffer(sealed)
    ? sealed
    : Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  return `${PREFIX}${keyName}:${version}:${bytes.toString('base64url')}`;
}

/**
 * Parses without revealing why a malformed ciphertext is malformed: every failure is the one decryption error,
 * like a bad tag, so the parser is not an oracle either.
 */
export function parseCiphertext(text: string): ParsedCiphertext {
  if (typeof text !== 'string' || text.length > MAX_CIPHERTEXT_CHARS || !text.startsWith(PREFIX))
    throw new KmsDecryptionError();
  const parts = text.slice(PREFIX.length).split(':');
  if (parts.length !== 3) throw new KmsDecryptionError();
  const [keyName, versionText, payload] = parts as [string, string, string];
  if (
    !KEY_NAME_PATTERN.test(keyName) ||
    !/^[1-9]\d{0,9}$/.test(versionText) ||
    !/^[A-Za-z0-9_-]+$/.test(payload)
  ) {
    throw new KmsDecryptionError();
  }
  return { keyName, version: Number(versionText), sealed: Buffer.from(payload, 'base64url') };
}

const AAD_DOMAIN = Buffer.from('warden/kms/v1 ciphertext\0', 'ascii');

/** Additional data of a KMS ciphertext: domain, key name, version and the caller's context, length-prefixed. */
export function ciphertextAad(keyName: string, version: number, context: Uint8Array): Buffer {
  const nameLength = Buffer.byteLength(keyName, 'utf8');
  const headAt = AAD_DOMAIN.length;
  const nameAt = headAt + 4 + 2 + 4;
  // One allocation on the hot path (every encrypt and decrypt builds one).
  const aad = Buffer.allocUnsafe(nameAt + nameLength + context.byteLength);
  AAD_DOMAIN.copy(aad, 0);
  aad.writeUInt32BE(version, headAt);
  aad.writeUInt16BE(nameLength, headAt + 4);
  aad.writeUInt32BE(context.byteLength, headAt + 6);
  aad.write(keyName, nameAt, 'utf8');
  aad.set(context, nameAt + nameLength);
  return aad;
}

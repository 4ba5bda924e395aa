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
  return `${PREFIX}${keyName}:${version}:${Buffer.from(sealed).toString('base64url')}`;
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

/** Additional data of a KMS ciphertext: domain, key name, version and the caller's context, length-prefixed. */
export function ciphertextAad(keyName: string, version: number, context: Uint8Array): Buffer {
  const name = Buffer.from(keyName, 'utf8');
  const head = Buffer.alloc(4 + 2 + 4);
  head.writeUInt32BE(version, 0);
  head.writeUInt16BE(name.length, 4);
  head.writeUInt32BE(context.byteLength, 6);
  return Buffer.concat([Buffer.from('warden/kms/v1 ciphertext\0', 'ascii'), head, name, context]);
}

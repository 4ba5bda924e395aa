import { createHash } from 'node:crypto';
import { mac, open, seal } from '../crypto/index.ts';
import type { MacKey, AeadKey } from '../crypto/index.ts';
import type { KmsService, Principal } from '../kms/index.ts';

/**
 * Encrypts the few secrets the identity service must read back in clear (TOTP seeds). Either under a KMS key
 * (`kmsSecretSealer`: the seed is encrypted by the KMS, whose key never leaves it) or under an AES-256-GCM key the
 * caller holds (`localSecretSealer`, e.g. derived from the deployment's root). `context` binds a sealed value to
 * its owner and purpose, so a sealed seed copied onto another user's row does not open.
 */
export interface SecretSealer {
  seal(plaintext: Uint8Array, context: string): Promise<string>;
  open(sealed: string, context: string): Promise<Buffer>;
}

const LOCAL_PREFIX = 'local1:';

export function localSecretSealer(key: AeadKey): SecretSealer {
  return {
    seal(plaintext, context) {
      return Promise.resolve(
        LOCAL_PREFIX + seal(key, plaintext, Buffer.from(context, 'utf8')).toString('base64url'),
      );
    },
    open(sealed, context) {
      if (!sealed.startsWith(LOCAL_PREFIX)) return Promise.reject(new Error('not a locally sealed secret'));
      return Promise.resolve(
        open(key, Buffer.from(sealed.slice(LOCAL_PREFIX.length), 'base64url'), Buffer.from(context, 'utf8')),
      );
    },
  };
}

/** Seals through `KmsService.encrypt` with `context` as the KMS encryption context (audited by the KMS). */
export function kmsSecretSealer(kms: KmsService, principal: Principal, keyName: string): SecretSealer {
  return {
    seal: (plaintext, context) => kms.encrypt(principal, keyName, plaintext, Buffer.from(context, 'utf8')),
    open: (sealed, context) => kms.decrypt(principal, sealed, Buffer.from(context, 'utf8')),
  };
}

/** Domain-separated keyed hash (base64url HMAC-SHA256) of a server-generated secret. */
export function keyedHash(key: MacKey, label: string, ...parts: readonly string[]): string {
  return mac(key, Buffer.from([`warden/identity/${label}/v1`, ...parts].join('\0'), 'utf8')).toString(
    'base64url',
  );
}

/** SHA-256, base64url: for thumbprints and for bounding the size of replay-cache keys. */
export function sha256Base64url(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('base64url');
}

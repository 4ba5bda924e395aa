import { verify as nodeVerify, type KeyObject } from 'node:crypto';
import { algorithmOf, hashFor } from './signer.ts';

/** DSSE v1 (secure-systems-lab/dsse protocol.md): pre-authentication encoding and signature checks. */

export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';

/** PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths in bytes as ASCII decimal. */
export function pae(payloadType: string, payload: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.byteLength} `, 'ascii'),
    type,
    Buffer.from(` ${payload.byteLength} `, 'ascii'),
    payload,
  ]);
}

/**
 * True if any of `signatures` (DER ECDSA) verifies over PAE(payloadType, payload) under `key`, with the hash the
 * key's curve calls for. DSSE lets an envelope carry several signatures; one by the trusted key suffices.
 */
export function verifyDsse(
  payloadType: string,
  payload: Uint8Array,
  signatures: readonly Uint8Array[],
  key: KeyObject,
): boolean {
  const digest = hashFor(algorithmOf(key));
  const message = pae(payloadType, payload);
  return signatures.some((sig) => {
    try {
      return nodeVerify(digest, message, { key, dsaEncoding: 'der' }, sig);
    } catch {
      // OpenSSL rejects some malformed DER by throwing rather than returning false; either way it does not verify.
      return false;
    }
  });
}

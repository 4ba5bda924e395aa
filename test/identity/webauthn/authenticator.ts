import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { encodeCBOR } from '@levischuck/tiny-cbor';
import type { CBORType } from '@levischuck/tiny-cbor';

/**
 * A software FIDO2 authenticator for tests: an ES256 key, `none` attestation, a signature counter. It builds
 * clientDataJSON, authenticator data (flags, counter, attested credential data) and the CBOR attestation
 * object exactly as a browser would hand them to the relying party, and lets a test lie about any part.
 */

const UP = 0x01;
const UV = 0x04;
const AT = 0x40;

export interface CeremonyOverrides {
  origin?: string;
  rpId?: string;
  type?: string;
  /** Replaces the flags byte. */
  flags?: number;
  /** Uses this counter instead of the next one (and does not advance). */
  counter?: number;
  challenge?: string;
}

function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url');
}

export class SoftwareAuthenticator {
  readonly credentialId: Buffer;
  readonly #privateKey: KeyObject;
  readonly #publicJwk: { x: string; y: string };
  readonly origin: string;
  readonly rpId: string;
  counter: number;
  userVerifying = false;

  constructor(options: { origin: string; rpId: string; counter?: number; credentialId?: Buffer }) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.#privateKey = privateKey;
    const jwk = publicKey.export({ format: 'jwk' });
    this.#publicJwk = { x: jwk.x!, y: jwk.y! };
    this.credentialId = options.credentialId ?? randomBytes(32);
    this.origin = options.origin;
    this.rpId = options.rpId;
    this.counter = options.counter ?? 0;
  }

  get id(): string {
    return b64url(this.credentialId);
  }

  /** COSE_Key (RFC 9053): kty EC2, alg ES256, crv P-256, x, y. */
  coseKey(): Uint8Array {
    return encodeCBOR(
      new Map<number, number | Uint8Array>([
        [1, 2],
        [3, -7],
        [-1, 1],
        [-2, Buffer.from(this.#publicJwk.x, 'base64url')],
        [-3, Buffer.from(this.#publicJwk.y, 'base64url')],
      ]),
    );
  }

  #clientData(type: string, challenge: string, o: CeremonyOverrides): Buffer {
    return Buffer.from(
      JSON.stringify({
        type: o.type ?? type,
        challenge: o.challenge ?? challenge,
        origin: o.origin ?? this.origin,
        crossOrigin: false,
      }),
    );
  }

  #authData(flags: number, counter: number, rpId: string, attested?: Uint8Array): Buffer {
    const head = Buffer.alloc(37);
    createHash('sha256').update(rpId).digest().copy(head, 0);
    head[32] = flags;
    head.writeUInt32BE(counter, 33);
    return attested === undefined ? head : Buffer.concat([head, attested]);
  }

  #nextCounter(o: CeremonyOverrides): number {
    if (o.counter !== undefined) return o.counter;
    this.counter += 1;
    return this.counter;
  }

  register(challenge: string, o: CeremonyOverrides = {}) {
    const clientDataJSON = this.#clientData('webauthn.create', challenge, o);
    const idLength = Buffer.alloc(2);
    idLength.writeUInt16BE(this.credentialId.length);
    const attested = Buffer.concat([Buffer.alloc(16), idLength, this.credentialId, this.coseKey()]);
    const flags = o.flags ?? UP | AT | (this.userVerifying ? UV : 0);
    const authData = this.#authData(flags, o.counter ?? this.counter, o.rpId ?? this.rpId, attested);
    const attestationObject = encodeCBOR(
      new Map<string, CBORType>([
        ['fmt', 'none'],
        ['attStmt', new Map()],
        ['authData', authData],
      ]),
    );
    return {
      id: this.id,
      rawId: this.id,
      type: 'public-key',
      clientExtensionResults: {},
      response: {
        clientDataJSON: b64url(clientDataJSON),
        attestationObject: b64url(attestationObject),
        transports: ['usb'],
      },
    };
  }

  authenticate(challenge: string, o: CeremonyOverrides = {}) {
    const clientDataJSON = this.#clientData('webauthn.get', challenge, o);
    const flags = o.flags ?? UP | (this.userVerifying ? UV : 0);
    const authData = this.#authData(flags, this.#nextCounter(o), o.rpId ?? this.rpId);
    const signed = Buffer.concat([authData, createHash('sha256').update(clientDataJSON).digest()]);
    const signature = sign('sha256', signed, this.#privateKey);
    return {
      id: this.id,
      rawId: this.id,
      type: 'public-key',
      clientExtensionResults: {},
      response: {
        clientDataJSON: b64url(clientDataJSON),
        authenticatorData: b64url(authData),
        signature: b64url(signature),
      },
    };
  }
}

import { BundleFormatError } from './errors.ts';
import { IN_TOTO_PAYLOAD_TYPE } from './dsse.ts';
import { field, isPlainObject, validate, type Schema } from './schema.ts';

/**
 * The Sigstore bundle v0.3 container of an OMS signature (§4, §8.1): strict parsing against
 * schemas/v1.0/bundle.schema.json and envelope.schema.json plus Sigstore's own rules, and assembly of the bundles
 * this implementation produces.
 */

export const BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';

// Sigstore spells v0.3 both ways. Earlier versions (0.1, 0.2) carry different verification-material rules and were
// never produced by any OMS signer, so they are refused rather than half-supported.
const ACCEPTED_MEDIA_TYPES: readonly string[] = [
  BUNDLE_MEDIA_TYPE,
  'application/vnd.dev.sigstore.bundle+json;version=0.3',
];

/** The JSON shape of the bundles this implementation writes. */
export interface BundleJson {
  readonly mediaType: string;
  readonly verificationMaterial:
    | { readonly publicKey: { readonly hint: string } }
    | { readonly x509CertificateChain: { readonly certificates: readonly { readonly rawBytes: string }[] } };
  readonly dsseEnvelope: {
    readonly payload: string;
    readonly payloadType: string;
    readonly signatures: readonly { readonly sig: string; readonly keyid?: string | null }[];
  };
}

export type VerificationMaterial =
  | {
      readonly method: 'key';
      /** Key fingerprint (current bundles). */
      readonly hint?: string;
      /** The public key itself (pre-v1.1.0 bundles): PEM or DER SPKI bytes. */
      readonly rawBytes?: Uint8Array;
      /** Sigstore PublicKeyDetails name accompanying rawBytes, e.g. PKIX_ECDSA_P384_SHA_384. */
      readonly keyDetails?: string;
    }
  | { readonly method: 'certificate'; readonly certificates: readonly Uint8Array[] }
  | { readonly method: 'sigstore'; readonly certificate: Uint8Array };

export interface ParsedBundle {
  readonly mediaType: string;
  readonly verificationMaterial: VerificationMaterial;
  readonly payloadType: string;
  readonly payload: Uint8Array;
  /** DER signatures, in envelope order. `keyid` is not kept: OMS never uses it (§4.1). */
  readonly signatures: readonly Uint8Array[];
}

const str: Schema = { type: 'string' };

const certificateSchema: Schema = {
  type: 'object',
  required: ['rawBytes'],
  properties: { rawBytes: { type: 'string', minLength: 1 } },
};

const tlogEntrySchema: Schema = {
  type: 'object',
  properties: {
    logIndex: str,
    logId: { type: 'object', properties: { keyId: str } },
    kindVersion: { type: 'object', properties: { kind: str, version: str } },
    integratedTime: str,
    inclusionPromise: { type: 'object', properties: { signedEntryTimestamp: str } },
    inclusionProof: {
      type: 'object',
      properties: {
        logIndex: str,
        rootHash: str,
        treeSize: str,
        hashes: { type: 'array', items: str },
        checkpoint: { type: 'object', properties: { envelope: str } },
      },
    },
    canonicalizedBody: str,
  },
};

const verificationMaterialSchema: Schema = {
  type: 'object',
  properties: {
    publicKey: { type: 'object', properties: { hint: str, rawBytes: str } },
    x509CertificateChain: {
      type: 'object',
      required: ['certificates'],
      properties: { certificates: { type: 'array', minItems: 1, items: certificateSchema } },
    },
    certificate: certificateSchema,
    tlogEntries: { type: 'array', items: tlogEntrySchema },
    timestampVerificationData: {
      type: 'object',
      properties: {
        rfc3161Timestamps: { type: 'array', items: { type: 'object', properties: { signedTimestamp: str } } },
      },
    },
  },
};

const envelopeSchema: Schema = {
  type: 'object',
  required: ['payload', 'payloadType', 'signatures'],
  properties: {
    payload: { type: 'string', minLength: 1 },
    payloadType: { type: 'string', enum: [IN_TOTO_PAYLOAD_TYPE] },
    signatures: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['sig'],
        properties: { sig: { type: 'string', minLength: 1 }, keyid: { type: 'string', nullable: true } },
        additionalProperties: false,
      },
    },
  },
  additionalProperties: false,
};

const bundleSchema: Schema = {
  type: 'object',
  required: ['mediaType', 'verificationMaterial', 'dsseEnvelope'],
  properties: {
    mediaType: { type: 'string', pattern: /^application\/vnd\.dev\.sigstore\.bundle/ },
    verificationMaterial: verificationMaterialSchema,
    dsseEnvelope: envelopeSchema,
  },
  additionalProperties: false,
};

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Standard padded base64 (RFC 4648 §4), as protobuf JSON writes bytes, and canonical: Node's decoder silently skips
 * junk and ignores non-zero padding bits, so the text is checked and round-tripped instead of trusted.
 */
export function decodeBase64(text: string, where: string): Buffer {
  const bytes = BASE64.test(text) ? Buffer.from(text, 'base64') : undefined;
  if (bytes?.toString('base64') !== text) throw new BundleFormatError(`${where} is not canonical base64`);
  return bytes;
}

function toValue(input: string | Uint8Array | object): unknown {
  let text: string;
  if (typeof input === 'string') {
    text = input;
  } else if (input instanceof Uint8Array) {
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(input);
    } catch (err) {
      throw new BundleFormatError('bundle is not UTF-8', { cause: err });
    }
  } else {
    // An already-parsed object goes through JSON too, so getters, prototypes and non-JSON values cannot reach
    // the validator: what is checked is exactly what a file with the same content would hold.
    let json: unknown;
    try {
      json = JSON.stringify(input);
    } catch (err) {
      throw new BundleFormatError('bundle object is not JSON-serialisable', { cause: err });
    }
    if (typeof json !== 'string') throw new BundleFormatError('bundle object is not JSON-serialisable');
    text = json;
  }
  if (text.trim() === '') throw new BundleFormatError('bundle is empty');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new BundleFormatError('bundle is not JSON', { cause: err });
  }
}

/**
 * Parses an OMS bundle (JSON text, UTF-8 bytes, or a parsed object) and validates it against the OMS bundle and
 * envelope schemas, Sigstore's `oneof` for verification material (exactly one of publicKey, x509CertificateChain,
 * certificate) and the bundle media type. Throws BundleFormatError, and nothing else, on any input.
 */
export function parseBundle(input: string | Uint8Array | object): ParsedBundle {
  const value = toValue(input);
  const problem = validate(value, bundleSchema, 'bundle');
  if (problem !== undefined) throw new BundleFormatError(problem);
  // The shape the schemas above guarantee.
  const bundle = value as {
    mediaType: string;
    verificationMaterial: Record<string, unknown>;
    dsseEnvelope: { payload: string; payloadType: string; signatures: { sig: string }[] };
  };
  if (!ACCEPTED_MEDIA_TYPES.includes(bundle.mediaType)) {
    throw new BundleFormatError(`unsupported bundle media type ${JSON.stringify(bundle.mediaType)}`);
  }
  const envelope = bundle.dsseEnvelope;
  return {
    mediaType: bundle.mediaType,
    verificationMaterial: parseVerificationMaterial(bundle.verificationMaterial),
    payloadType: envelope.payloadType,
    payload: decodeBase64(envelope.payload, 'dsseEnvelope.payload'),
    signatures: envelope.signatures.map((s, i) => decodeBase64(s.sig, `dsseEnvelope.signatures[${i}].sig`)),
  };
}

function parseVerificationMaterial(vm: Record<string, unknown>): VerificationMaterial {
  const present = ['publicKey', 'x509CertificateChain', 'certificate'].filter((k) => Object.hasOwn(vm, k));
  if (present.length !== 1) {
    throw new BundleFormatError(
      'verificationMaterial must hold exactly one of publicKey, x509CertificateChain, certificate' +
        (present.length > 1 ? ` (found ${present.join(', ')})` : ''),
    );
  }
  const publicKey = field(vm, 'publicKey');
  if (isPlainObject(publicKey)) return parsePublicKey(publicKey);

  const chain = field(vm, 'x509CertificateChain');
  if (isPlainObject(chain)) {
    const certs = chain.certificates as { rawBytes: string }[];
    return {
      method: 'certificate',
      certificates: certs.map((c, i) =>
        decodeBase64(c.rawBytes, `x509CertificateChain.certificates[${i}].rawBytes`),
      ),
    };
  }
  // Only `certificate` is left. The sigstore method needs a transparency-log entry (§4.1, schema anyOf).
  const tlog = field(vm, 'tlogEntries');
  if (!Array.isArray(tlog) || tlog.length === 0) {
    throw new BundleFormatError(
      'the sigstore method (verificationMaterial.certificate) needs at least one tlogEntries entry',
    );
  }
  const cert = field(vm, 'certificate') as { rawBytes: string };
  return {
    method: 'sigstore',
    certificate: decodeBase64(cert.rawBytes, 'verificationMaterial.certificate.rawBytes'),
  };
}

function parsePublicKey(pk: Record<string, unknown>): VerificationMaterial {
  const hint = field(pk, 'hint') as string | undefined;
  const rawText = field(pk, 'rawBytes') as string | undefined;
  const keyDetails = field(pk, 'keyDetails');
  if (keyDetails !== undefined && typeof keyDetails !== 'string') {
    throw new BundleFormatError('verificationMaterial.publicKey.keyDetails: expected a string');
  }
  const rawBytes =
    rawText === undefined ? undefined : decodeBase64(rawText, 'verificationMaterial.publicKey.rawBytes');
  const usableHint = hint === '' ? undefined : hint;
  if (usableHint === undefined && (rawBytes === undefined || rawBytes.byteLength === 0)) {
    throw new BundleFormatError('verificationMaterial.publicKey identifies no key (needs hint or rawBytes)');
  }
  return {
    method: 'key',
    ...(usableHint === undefined ? {} : { hint: usableHint }),
    ...(rawBytes === undefined ? {} : { rawBytes }),
    ...(keyDetails === undefined ? {} : { keyDetails }),
  };
}

/** Assembles a bundle as §6.8 and Appendix A lay it out (keyid "", no tlogEntries for key/certificate). */
export function buildBundle(
  identity: { readonly hint: string } | { readonly certificates: readonly Uint8Array[] },
  payload: Uint8Array,
  signature: Uint8Array,
): BundleJson {
  const verificationMaterial =
    'hint' in identity
      ? { publicKey: { hint: identity.hint } }
      : {
          x509CertificateChain: {
            certificates: identity.certificates.map((c) => ({ rawBytes: Buffer.from(c).toString('base64') })),
          },
        };
  return {
    mediaType: BUNDLE_MEDIA_TYPE,
    verificationMaterial,
    dsseEnvelope: {
      payload: Buffer.from(payload).toString('base64'),
      payloadType: IN_TOTO_PAYLOAD_TYPE,
      signatures: [{ sig: Buffer.from(signature).toString('base64'), keyid: '' }],
    },
  };
}

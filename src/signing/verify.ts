import { createPublicKey, type KeyObject } from 'node:crypto';
import { parseBundle, type VerificationMaterial } from './bundle.ts';
import { validateCertificateChain, type CertificateInput } from './certificates.ts';
import { verifyDsse } from './dsse.ts';
import {
  BundleFormatError,
  KeyMismatchError,
  ModelMismatchError,
  SignatureError,
  UnsupportedError,
} from './errors.ts';
import { compareCodePoints, parseShardName } from './paths.ts';
import {
  exclusions,
  hashFiles,
  listModel,
  plannedResources,
  resourceCount,
  supportedHash,
  type ModelFile,
} from './serialize.ts';
import { algorithmOf, KEY_DETAILS, publicKeyDerFingerprint, publicKeyHint } from './signer.ts';
import { parseStatement, type Statement } from './statement.ts';

/** Verification (§8): bundle → signature → statement → model on disk. */

/** What the caller trusts: a public key (key method) or certificate trust anchors (certificate method). */
export type VerificationTrust =
  | { readonly publicKey: KeyObject | string }
  | {
      readonly trustedRoots: readonly CertificateInput[];
      /** Instant at which the chain must be valid; default now. See ChainValidationOptions.at. */
      readonly at?: Date;
    };

export interface VerifiedBundle {
  readonly method: 'key' | 'certificate';
  /** The signed statement, schema- and consistency-checked. */
  readonly statement: Statement;
  /** The key that verified the DSSE signature (the caller's key, or the validated leaf certificate's). */
  readonly signingKey: KeyObject;
}

export interface VerifyModelOptions {
  /** Exclusions on top of the defaults and the bundle's `ignore_paths`. */
  readonly ignorePaths?: readonly string[];
  /** The bundle's own location, excluded when it lies inside the model (§6.2). */
  readonly signaturePath?: string;
  /** §8.5: accept files the manifest does not list (still verifying every listed one). Default false. */
  readonly ignoreUnsignedFiles?: boolean;
  /**
   * Follow symlinks when the bundle says the signer did (`allow_symlinks: true`). Default false: symlinks are refused
   * whatever the bundle says, so a bundle cannot widen what the verifier reads.
   */
  readonly allowSymlinks?: boolean;
  readonly concurrency?: number;
  readonly onWarning?: (message: string) => void;
}

export interface VerifiedModel extends VerifiedBundle {
  /** Number of files whose content was hashed and matched. */
  readonly filesVerified: number;
}

function toPublicKey(input: KeyObject | string): KeyObject {
  try {
    const key = typeof input === 'string' ? createPublicKey(input) : input;
    return key.type === 'private' ? createPublicKey(key) : key;
  } catch (err) {
    throw new KeyMismatchError(`the trusted public key cannot be read (${String(err)})`);
  }
}

function parseRawKey(raw: Uint8Array): KeyObject {
  const bytes = Buffer.from(raw);
  try {
    // Pre-v1.1.0 reference bundles put the PEM text here; Sigstore's PublicKey.raw_bytes is DER SPKI.
    return bytes.subarray(0, 11).toString('latin1') === '-----BEGIN '
      ? createPublicKey(bytes.toString('utf8'))
      : createPublicKey({ key: bytes, format: 'der', type: 'spki' });
  } catch (err) {
    throw new BundleFormatError('verificationMaterial.publicKey.rawBytes is not a public key', {
      cause: err,
    });
  }
}

/**
 * Key method: the bundle's key identifier must name the caller's key. `hint` is accepted as SHA-256 of the SPKI PEM
 * (reference implementation, shared vectors) or of the DER SPKI; `rawBytes` (pre-v1.1.0) must be the same key and
 * `keyDetails`, when present, its algorithm (§11.2 relaxation 1).
 */
function checkKeyIdentifier(
  material: Extract<VerificationMaterial, { method: 'key' }>,
  key: KeyObject,
): void {
  if (
    material.hint !== undefined &&
    material.hint !== publicKeyHint(key) &&
    material.hint !== publicKeyDerFingerprint(key)
  ) {
    throw new KeyMismatchError('the bundle was signed for a different key (publicKey.hint)');
  }
  if (material.rawBytes !== undefined && !parseRawKey(material.rawBytes).equals(key)) {
    throw new KeyMismatchError('the bundle was signed for a different key (publicKey.rawBytes)');
  }
  if (material.keyDetails !== undefined && material.keyDetails !== KEY_DETAILS[algorithmOf(key)]) {
    throw new KeyMismatchError(
      `the bundle names key type ${material.keyDetails}, the trusted key is not that`,
    );
  }
}

async function signingKeyFor(
  material: VerificationMaterial,
  trust: VerificationTrust,
): Promise<{ method: 'key' | 'certificate'; key: KeyObject }> {
  if (material.method === 'sigstore') {
    throw new UnsupportedError(
      'the sigstore method (Fulcio certificate + Rekor transparency log) is not supported; only key and certificate',
    );
  }
  if ('publicKey' in trust) {
    if (material.method !== 'key') {
      throw new KeyMismatchError(
        'the bundle uses the certificate method; verify it with trusted roots, not a key',
      );
    }
    const key = toPublicKey(trust.publicKey);
    algorithmOf(key);
    checkKeyIdentifier(material, key);
    return { method: 'key', key };
  }
  if (material.method !== 'certificate') {
    throw new KeyMismatchError(
      'the bundle uses the key method; verify it with a public key, not trusted roots',
    );
  }
  const { leafKey } = await validateCertificateChain(material.certificates, trust);
  return { method: 'certificate', key: leafKey };
}

/**
 * Verifies a bundle without looking at any model: format (§8.1), signature (§8.2), statement (§8.3). Accepts the
 * older shapes §11.2 lists: `publicKey.rawBytes` (+`keyDetails`), `keyid` absent/""/null, absent or empty
 * `tlogEntries`, absent `ignore_paths`, any non-empty subject name.
 */
export async function verifyBundle(
  bundle: string | Uint8Array | object,
  trust: VerificationTrust,
): Promise<VerifiedBundle> {
  const parsed = parseBundle(bundle);
  const { method, key } = await signingKeyFor(parsed.verificationMaterial, trust);
  if (!verifyDsse(parsed.payloadType, parsed.payload, parsed.signatures, key)) throw new SignatureError();
  const statement = parseStatement(parsed.payload);
  return { method, statement, signingKey: key };
}

/** Signed resources grouped by file path (a `files` resource is its own path; a shard names its file). */
function signedByFile(statement: Statement): Map<string, Map<string, string>> {
  const { resources, serialization } = statement.predicate;
  const byFile = new Map<string, Map<string, string>>();
  for (const r of resources) {
    // parseStatement has already checked every shard name parses.
    const file = serialization.method === 'files' ? r.name : (parseShardName(r.name)?.path ?? r.name);
    let entries = byFile.get(file);
    if (entries === undefined) byFile.set(file, (entries = new Map<string, string>()));
    entries.set(r.name, r.digest);
  }
  return byFile;
}

/**
 * Verifies a model directory (or single file) against a bundle: verifyBundle, then §8.4 — enumerate with the
 * signer's exclusions and the symlink policy, re-hash, and require an exact match. Only files listed on both sides
 * are hashed; size changes and shard-layout changes are detected without reading the file.
 *
 * Throws ModelMismatchError listing missing, changed and unsigned (extra) files.
 */
export async function verifyModel(
  modelPath: string,
  bundle: string | Uint8Array | object,
  trust: VerificationTrust,
  options: VerifyModelOptions = {},
): Promise<VerifiedModel> {
  const verified = await verifyBundle(bundle, trust);
  const serialization = verified.statement.predicate.serialization;
  supportedHash(serialization.hash_type);
  const followSymlinks = serialization.allow_symlinks && options.allowSymlinks === true;
  const ignore = await exclusions(
    modelPath,
    [...(serialization.ignore_paths ?? []), ...(options.ignorePaths ?? [])],
    options.signaturePath,
  );
  const listing = await listModel(modelPath, {
    ignore,
    followSymlinks,
    onWarning: options.onWarning ?? (() => undefined),
  });

  const signed = signedByFile(verified.statement);
  const extra: string[] = [];
  const changed: string[] = [];
  const toHash: ModelFile[] = [];
  const seen = new Set<string>();
  for (const file of listing.files) {
    seen.add(file.name);
    const expected = signed.get(file.name);
    // Counted before any list is built: a large local file under a small signed shard size must not turn into a
    // huge array; once the count matches the manifest, the plan is no larger than the bundle itself.
    const count = resourceCount(file, serialization);
    if (expected === undefined) {
      // Under shards an empty file yields no resource, so it has nothing to be unsigned for (§6.3.2).
      if (count > 0 && options.ignoreUnsignedFiles !== true) extra.push(file.name);
    } else if (
      count !== expected.size ||
      plannedResources(file, serialization).some((p) => !expected.has(p.name))
    ) {
      changed.push(file.name);
    } else {
      toHash.push(file);
    }
  }
  const missing = [...signed.keys()].filter((name) => !seen.has(name));

  const digests = await hashFiles(toHash, serialization, {
    concurrency: options.concurrency,
    followSymlinks,
  });
  toHash.forEach((file, i) => {
    const expected = signed.get(file.name);
    if (digests[i]?.some((r) => expected?.get(r.name) !== r.digest) !== false) changed.push(file.name);
  });

  if (extra.length + missing.length + changed.length > 0) {
    const sort = (list: string[]): string[] => list.sort(compareCodePoints);
    throw new ModelMismatchError({ extra: sort(extra), missing: sort(missing), changed: sort(changed) });
  }
  return { ...verified, filesVerified: toHash.length };
}

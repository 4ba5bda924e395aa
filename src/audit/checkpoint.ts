/**
 * C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys, and C2SP transparency-log checkpoints
 * (c2sp.org/tlog-checkpoint) carried in them. Pure logic; signing is abstract (`NoteSigner`) so a KMS can hold
 * the log key.
 *
 * Error style: malformed input (note, checkpoint body, verifier key, signer output) throws `NoteFormatError`
 * (an `InvalidInputError`); a well-formed note that fails verification throws `NoteVerificationError` (a
 * `VerificationError`). Both carry a machine-readable `reason`; messages never echo the input.
 * See docs/spec/audit-checkpoint.md.
 */
import {
  createHash,
  createPublicKey,
  sign as cryptoSign,
  verify as cryptoVerify,
  type KeyObject,
} from 'node:crypto';
import { InvalidInputError, InvalidKeyError, VerificationError } from '../crypto/index.ts';
import { HASH_SIZE, isEmptyRoot } from './merkle.ts';

/** Notes with more signature lines than this are rejected before any signature is checked. */
export const MAX_NOTE_SIGNATURES = 100;
/** Signature type identifier byte of Ed25519 note signatures. */
export const ED25519_SIGNATURE_TYPE = 0x01;
const ED25519_PUBLIC_KEY_SIZE = 32;
const ED25519_SIGNATURE_SIZE = 64;
const SIGNATURE_PREFIX = '\u2014 '; // em dash, space

export type NoteFormatFailure =
  /** Not valid UTF-8 (bytes) or not well-formed UTF-16 (string). */
  | 'encoding'
  /** An ASCII control character other than newline. */
  | 'control_character'
  /** Note text missing its final newline (or text otherwise unusable for signing). */
  | 'text'
  /** No blank line followed by at least one signature line. */
  | 'no_signatures'
  /** A signature line not of the form `— <name> <base64>`. */
  | 'signature_line'
  /** More than MAX_NOTE_SIGNATURES signature lines. */
  | 'too_many_signatures'
  /** Key name empty, or containing a Unicode space, `+` or a control character. */
  | 'key_name'
  /** Not canonical standard padded base64. */
  | 'base64'
  /** Decoded signature shorter than 4-byte key ID + 1 byte. */
  | 'signature_length'
  /** Checkpoint body without the three mandatory lines, or an empty line. */
  | 'checkpoint_lines'
  /** Empty origin line. */
  | 'origin'
  /** Tree size not canonical decimal, or above 2^53 − 1. */
  | 'tree_size'
  /** Root hash not base64 of 32 bytes, or not the empty root at size 0. */
  | 'root_hash'
  /** An empty extension line, or one with a newline. */
  | 'extension_line'
  /** Verifier key not `<name>+<8 lowercase hex>+<base64>`. */
  | 'verifier_key'
  /** Verifier key ID that is not the one derived from its name and public key. */
  | 'key_id'
  /** Verifier key with a signature type other than Ed25519 (0x01). */
  | 'unsupported_key_type'
  /** Public key of the wrong length or not importable. */
  | 'public_key';

/** Malformed note, checkpoint or verifier key. */
export class NoteFormatError extends InvalidInputError {
  readonly reason: NoteFormatFailure;
  constructor(reason: NoteFormatFailure) {
    super(`malformed signed note or checkpoint: ${reason}`);
    this.reason = reason;
  }
}

export type NoteVerificationFailure =
  /** A signature by a known key (name and key ID match a verifier) does not verify: the whole note is rejected. */
  | 'invalid_signature'
  /** No signature by any known key. */
  | 'no_trusted_signature'
  /** The checkpoint's origin is not the expected one. */
  | 'origin_mismatch';

/** A well-formed note or checkpoint that must not be trusted. */
export class NoteVerificationError extends VerificationError {
  readonly reason: NoteVerificationFailure;
  constructor(reason: NoteVerificationFailure) {
    super('signed note');
    this.message = `signed note verification failed: ${reason}`;
    this.reason = reason;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Keys.

/** Produces note signatures. `sign` receives the exact note text bytes (UTF-8, final newline included). */
export interface NoteSigner {
  readonly keyName: string;
  /** uint32 key ID, as it appears (big-endian) in front of the signature. */
  readonly keyId: number;
  sign(message: Uint8Array): Promise<Uint8Array>;
}

/** Checks note signatures of one key. Must not throw for any signature bytes. */
export interface NoteVerifier {
  readonly keyName: string;
  readonly keyId: number;
  verify(message: Uint8Array, signature: Uint8Array): boolean;
}

export interface Ed25519NoteVerifier extends NoteVerifier {
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
}

export interface Ed25519NoteSigner extends NoteSigner {
  readonly publicKey: Uint8Array;
  /** The vkey verifiers are configured with. */
  readonly verifierKey: string;
}

/** Runtime array check without narrowing (inputs may come from untyped callers). */
function isArrayValue(x: unknown): boolean {
  return Array.isArray(x);
}

function isList<T>(x: T | readonly T[]): x is readonly T[] {
  return Array.isArray(x);
}

const WHITE_SPACE = /\p{White_Space}/u;

function hasControlCharacter(s: string, allowNewline: boolean): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 && !(allowNewline && c === 0x0a)) return true;
  }
  return false;
}

/** Key names: non-empty, well-formed, no Unicode White_Space, no `+`, no control characters. */
export function isValidKeyName(name: unknown): name is string {
  return (
    typeof name === 'string' &&
    name.length > 0 &&
    name.isWellFormed() &&
    !name.includes('+') &&
    !WHITE_SPACE.test(name) &&
    !hasControlCharacter(name, false)
  );
}

function requireKeyName(name: unknown): asserts name is string {
  if (!isValidKeyName(name)) throw new NoteFormatError('key_name');
}

function isKeyId(id: unknown): id is number {
  return typeof id === 'number' && Number.isInteger(id) && id >= 0 && id <= 0xffffffff;
}

function requirePublicKey(publicKey: unknown): asserts publicKey is Uint8Array {
  if (!(publicKey instanceof Uint8Array) || publicKey.byteLength !== ED25519_PUBLIC_KEY_SIZE) {
    throw new NoteFormatError('public_key');
  }
}

/** Key ID of an Ed25519 note key: SHA-256(name || 0x0A || 0x01 || public key)[:4] as a big-endian uint32. */
export function ed25519NoteKeyId(keyName: string, publicKey: Uint8Array): number {
  requireKeyName(keyName);
  requirePublicKey(publicKey);
  const digest = createHash('sha256')
    .update(keyName, 'utf8')
    .update(Uint8Array.of(0x0a, ED25519_SIGNATURE_TYPE))
    .update(publicKey)
    .digest();
  return digest.readUInt32BE(0);
}

function keyIdHex(id: number): string {
  return id.toString(16).padStart(8, '0');
}

/** `<name>+<hex key ID>+<base64(0x01 || public key)>`. */
export function formatVerifierKey(keyName: string, publicKey: Uint8Array): string {
  const id = ed25519NoteKeyId(keyName, publicKey);
  const material = Buffer.concat([Uint8Array.of(ED25519_SIGNATURE_TYPE), publicKey]).toString('base64');
  return `${keyName}+${keyIdHex(id)}+${material}`;
}

/** A verifier for Ed25519 signatures by `publicKey` under `keyName`. */
export function ed25519NoteVerifier(keyName: string, publicKey: Uint8Array): Ed25519NoteVerifier {
  const keyId = ed25519NoteKeyId(keyName, publicKey);
  const raw = Uint8Array.from(publicKey);
  let key: KeyObject;
  try {
    key = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw).toString('base64url') },
      format: 'jwk',
    });
  } catch {
    throw new NoteFormatError('public_key');
  }
  return {
    keyName,
    keyId,
    publicKey: raw,
    verify(message: Uint8Array, signature: Uint8Array): boolean {
      if (!(signature instanceof Uint8Array) || signature.byteLength !== ED25519_SIGNATURE_SIZE) return false;
      try {
        return cryptoVerify(null, message, key, signature);
      } catch {
        return false;
      }
    },
  };
}

/**
 * Parses a vkey. Strict: exactly `<name>+<8 lowercase hex digits>+<canonical padded base64>`, signature type
 * 0x01 (Ed25519) with a 32-byte key, and the key ID must be the one derived from name and key.
 */
export function parseVerifierKey(vkey: string): Ed25519NoteVerifier {
  if (typeof vkey !== 'string') throw new NoteFormatError('verifier_key');
  const plus = vkey.indexOf('+');
  if (plus < 0) throw new NoteFormatError('verifier_key');
  const name = vkey.slice(0, plus);
  requireKeyName(name);
  const idHex = vkey.slice(plus + 1, plus + 9);
  if (!/^[0-9a-f]{8}$/.test(idHex) || vkey.charAt(plus + 9) !== '+')
    throw new NoteFormatError('verifier_key');
  const material = decodeBase64(vkey.slice(plus + 10));
  if (material.byteLength === 0) throw new NoteFormatError('verifier_key');
  if (material[0] !== ED25519_SIGNATURE_TYPE) throw new NoteFormatError('unsupported_key_type');
  const verifier = ed25519NoteVerifier(name, material.subarray(1));
  if (verifier.keyId !== Number.parseInt(idHex, 16)) throw new NoteFormatError('key_id');
  return verifier;
}

/** A note signer over a local node:crypto Ed25519 private key (tests, development; production uses the KMS). */
export function localEd25519NoteSigner(privateKey: KeyObject, keyName: string): Ed25519NoteSigner {
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ed25519') {
    throw new InvalidKeyError('note signer needs an Ed25519 private key');
  }
  requireKeyName(keyName);
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new InvalidKeyError('cannot export the Ed25519 public key');
  const publicKey = new Uint8Array(Buffer.from(jwk.x, 'base64url'));
  return {
    keyName,
    keyId: ed25519NoteKeyId(keyName, publicKey),
    publicKey,
    verifierKey: formatVerifierKey(keyName, publicKey),
    sign(message: Uint8Array): Promise<Uint8Array> {
      return Promise.resolve(new Uint8Array(cryptoSign(null, message, privateKey)));
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Encodings.

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Canonical standard base64 with padding (RFC 4648 §4); non-zero padding bits are rejected. */
function decodeBase64(s: string): Uint8Array {
  if (!BASE64.test(s)) throw new NoteFormatError('base64');
  const bytes = Buffer.from(s, 'base64');
  if (bytes.toString('base64') !== s) throw new NoteFormatError('base64');
  return new Uint8Array(bytes);
}

function encodeBase64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function toNoteString(note: string | Uint8Array): string {
  if (typeof note === 'string') {
    if (!note.isWellFormed()) throw new NoteFormatError('encoding');
    return note;
  }
  if (!(note instanceof Uint8Array)) throw new NoteFormatError('encoding');
  try {
    return utf8Decoder.decode(note);
  } catch {
    throw new NoteFormatError('encoding');
  }
}

/** Note text rules shared by signing and checkpoint parsing: well-formed, no controls but `\n`, ends in `\n`. */
function requireNoteText(text: unknown): asserts text is string {
  if (typeof text !== 'string' || !text.isWellFormed()) throw new NoteFormatError('encoding');
  if (hasControlCharacter(text, true)) throw new NoteFormatError('control_character');
  if (!text.endsWith('\n')) throw new NoteFormatError('text');
}

// ---------------------------------------------------------------------------------------------------------
// Signed notes.

/** One signature line: who claims to have signed, and the signature bytes (key ID stripped). */
export interface NoteSignature {
  readonly keyName: string;
  readonly keyId: number;
  readonly signature: Uint8Array;
}

export interface OpenedNote {
  /** The verified note text, final newline included. */
  readonly text: string;
  /** Signatures by known keys, all verified; one per key (repeats dropped), in note order. */
  readonly verified: readonly NoteSignature[];
  /** Signatures by keys not among the verifiers: NOT verified (e.g. witness cosignatures); repeats dropped. */
  readonly unknown: readonly NoteSignature[];
}

interface ParsedNote {
  readonly text: string;
  readonly signatures: readonly (NoteSignature & { readonly line: string })[];
}

function parseNote(note: string): ParsedNote {
  if (hasControlCharacter(note, true)) throw new NoteFormatError('control_character');
  const sep = note.lastIndexOf('\n\n');
  if (sep < 0) throw new NoteFormatError('no_signatures');
  const text = note.slice(0, sep + 1);
  const block = note.slice(sep + 2);
  if (block.length === 0) throw new NoteFormatError('no_signatures');
  if (!block.endsWith('\n')) throw new NoteFormatError('signature_line');
  const lines = block.slice(0, -1).split('\n');
  if (lines.length > MAX_NOTE_SIGNATURES) throw new NoteFormatError('too_many_signatures');
  const signatures = lines.map((line) => {
    if (!line.startsWith(SIGNATURE_PREFIX)) throw new NoteFormatError('signature_line');
    const rest = line.slice(SIGNATURE_PREFIX.length);
    const space = rest.indexOf(' ');
    if (space < 0) throw new NoteFormatError('signature_line');
    const keyName = rest.slice(0, space);
    requireKeyName(keyName);
    const raw = decodeBase64(rest.slice(space + 1));
    if (raw.byteLength < 5) throw new NoteFormatError('signature_length');
    const keyId = new DataView(raw.buffer, raw.byteOffset, 4).getUint32(0);
    return { keyName, keyId, signature: raw.slice(4), line };
  });
  return { text, signatures };
}

function verifierKey(keyName: string, keyId: number): string {
  return `${keyName}+${keyIdHex(keyId)}`;
}

function indexVerifiers(verifiers: readonly NoteVerifier[]): Map<string, NoteVerifier> {
  if (!isArrayValue(verifiers)) throw new InvalidInputError('verifiers must be an array');
  const byKey = new Map<string, NoteVerifier>();
  for (const v of verifiers) {
    if (!isValidKeyName(v.keyName) || !isKeyId(v.keyId)) throw new InvalidInputError('invalid note verifier');
    const k = verifierKey(v.keyName, v.keyId);
    if (byKey.has(k)) throw new InvalidInputError('two note verifiers share a key name and key ID');
    byKey.set(k, v);
  }
  return byKey;
}

/**
 * Parses and verifies a signed note. Signatures whose (key name, key ID) match no verifier are ignored (and
 * returned in `unknown`); every signature by a known key must verify, and at least one must exist.
 *
 * @throws NoteFormatError on malformed notes; NoteVerificationError when not trusted.
 */
export function openNote(note: string | Uint8Array, verifiers: readonly NoteVerifier[]): OpenedNote {
  const byKey = indexVerifiers(verifiers);
  const parsed = parseNote(toNoteString(note));
  const message = Buffer.from(parsed.text, 'utf8');
  const verified: NoteSignature[] = [];
  const unknown: NoteSignature[] = [];
  const seenKeys = new Set<string>();
  const seenUnknownLines = new Set<string>();
  for (const { line, ...sig } of parsed.signatures) {
    const k = verifierKey(sig.keyName, sig.keyId);
    const v = byKey.get(k);
    if (v === undefined) {
      if (!seenUnknownLines.has(line)) unknown.push(sig);
      seenUnknownLines.add(line);
      continue;
    }
    if (!v.verify(message, sig.signature)) throw new NoteVerificationError('invalid_signature');
    if (!seenKeys.has(k)) verified.push(sig);
    seenKeys.add(k);
  }
  if (verified.length === 0) throw new NoteVerificationError('no_trusted_signature');
  return { text: parsed.text, verified, unknown };
}

/**
 * Signs note text (which must end in a newline, be well-formed and free of control characters other than
 * newline) with one or more signers, returning the signed note.
 */
export async function signNote(text: string, signers: NoteSigner | readonly NoteSigner[]): Promise<string> {
  requireNoteText(text);
  const list: readonly NoteSigner[] = isList(signers) ? signers : [signers];
  if (list.length === 0 || list.length > MAX_NOTE_SIGNATURES) {
    throw new InvalidInputError(`a note needs 1 to ${MAX_NOTE_SIGNATURES} signers`);
  }
  const seen = new Set<string>();
  for (const s of list) {
    requireKeyName(s.keyName);
    if (!isKeyId(s.keyId)) throw new InvalidInputError('note signer key ID must be a uint32');
    const k = verifierKey(s.keyName, s.keyId);
    if (seen.has(k)) throw new InvalidInputError('two note signers share a key name and key ID');
    seen.add(k);
  }
  const message = new Uint8Array(Buffer.from(text, 'utf8'));
  const signatures = await Promise.all(list.map((s) => s.sign(Uint8Array.from(message))));
  const lines = list.map((s, i) => {
    const sig = signatures[i];
    if (!(sig instanceof Uint8Array) || sig.byteLength === 0) {
      throw new InvalidInputError('note signer returned an empty or non-binary signature');
    }
    const id = new Uint8Array(4);
    new DataView(id.buffer).setUint32(0, s.keyId);
    return `${SIGNATURE_PREFIX}${s.keyName} ${encodeBase64(Buffer.concat([id, sig]))}\n`;
  });
  return `${text}\n${lines.join('')}`;
}

// ---------------------------------------------------------------------------------------------------------
// Checkpoints.

export interface Checkpoint {
  /** Log identity. Warden's own logs use a valid key name here, and sign with a key of that name. */
  readonly origin: string;
  /** Number of leaves, 0 ≤ treeSize ≤ 2^53 − 1. */
  readonly treeSize: number;
  /** RFC 6962 root hash over the first treeSize leaves (32 bytes). */
  readonly rootHash: Uint8Array;
  /** Opaque, non-empty extension lines (NOT RECOMMENDED by the spec; usually empty). */
  readonly extensions: readonly string[];
}

export interface OpenedCheckpoint {
  readonly checkpoint: Checkpoint;
  readonly verified: readonly NoteSignature[];
  readonly unknown: readonly NoteSignature[];
}

const DECIMAL = /^(?:0|[1-9][0-9]{0,15})$/;

/** The checkpoint note text: origin, size, base64 root, extension lines, each ending in a newline. */
export function formatCheckpoint(checkpoint: Checkpoint): string {
  const { origin, treeSize, rootHash, extensions } = checkpoint;
  if (!isValidKeyName(origin)) throw new NoteFormatError('origin');
  if (typeof treeSize !== 'number' || !Number.isSafeInteger(treeSize) || treeSize < 0) {
    throw new NoteFormatError('tree_size');
  }
  if (!(rootHash instanceof Uint8Array) || rootHash.byteLength !== HASH_SIZE)
    throw new NoteFormatError('root_hash');
  if (treeSize === 0 && !isEmptyRoot(rootHash)) throw new NoteFormatError('root_hash');
  if (!isArrayValue(extensions)) throw new NoteFormatError('extension_line');
  for (const e of extensions) {
    if (typeof e !== 'string' || e.length === 0 || !e.isWellFormed() || hasControlCharacter(e, false)) {
      throw new NoteFormatError('extension_line');
    }
  }
  return [origin, String(treeSize), encodeBase64(rootHash), ...extensions].map((l) => `${l}\n`).join('');
}

/**
 * Strictly parses checkpoint note text. The origin may be any non-empty line (the spec forbids assuming its
 * format; callers compare it with the origin they expect).
 */
export function parseCheckpoint(text: string): Checkpoint {
  requireNoteText(text);
  const lines = text.slice(0, -1).split('\n');
  const [origin, size, root, ...extensions] = lines;
  if (origin === undefined || size === undefined || root === undefined)
    throw new NoteFormatError('checkpoint_lines');
  if (origin.length === 0) throw new NoteFormatError('origin');
  if (!DECIMAL.test(size)) throw new NoteFormatError('tree_size');
  const treeSize = Number(size);
  if (!Number.isSafeInteger(treeSize)) throw new NoteFormatError('tree_size');
  let rootHash: Uint8Array;
  try {
    rootHash = decodeBase64(root);
  } catch {
    throw new NoteFormatError('root_hash');
  }
  if (rootHash.byteLength !== HASH_SIZE) throw new NoteFormatError('root_hash');
  if (treeSize === 0 && !isEmptyRoot(rootHash)) throw new NoteFormatError('root_hash');
  if (extensions.some((e) => e.length === 0)) throw new NoteFormatError('extension_line');
  return { origin, treeSize, rootHash, extensions };
}

/** Formats and signs a checkpoint. */
export function signCheckpoint(
  checkpoint: Checkpoint,
  signers: NoteSigner | readonly NoteSigner[],
): Promise<string> {
  return signNote(formatCheckpoint(checkpoint), signers);
}

/**
 * Opens a signed checkpoint: verifies the note (see `openNote`), parses the body strictly and requires the
 * origin to equal `expectedOrigin` exactly.
 */
export function openCheckpoint(
  note: string | Uint8Array,
  verifiers: readonly NoteVerifier[],
  expectedOrigin: string,
): OpenedCheckpoint {
  const opened = openNote(note, verifiers);
  const checkpoint = parseCheckpoint(opened.text);
  if (checkpoint.origin !== expectedOrigin) throw new NoteVerificationError('origin_mismatch');
  return { checkpoint, verified: opened.verified, unknown: opened.unknown };
}

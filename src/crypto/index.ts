export * from './errors.ts';
export { constantTimeEqual, wipe, concatBytes } from './bytes.ts';
export { MAX_RANDOM_BYTES, randomBytes } from './random.ts';
export {
  AeadKey,
  AsymmetricPrivateKey,
  AsymmetricPublicKey,
  HkdfInputKey,
  MacKey,
  SecretKey,
  WardenKey,
  WrappingKey,
} from './keys.ts';
export type { AsymmetricKeyPurpose, SecretKeyPurpose, SecretKeyType } from './keys.ts';
export {
  AES_GCM_MAX_PLAINTEXT_BYTES,
  AES_GCM_NONCE_BYTES,
  AES_GCM_OVERHEAD_BYTES,
  AES_GCM_TAG_BYTES,
  open,
  seal,
} from './aes-gcm.ts';
export { HKDF_MAX_INFO_BYTES, hkdf, hkdfDeriveKey, hkdfExpand, hkdfExtract } from './hkdf.ts';
export type { HkdfHash, HkdfParams } from './hkdf.ts';
export {
  aesKeyUnwrap,
  aesKeyUnwrapPadded,
  aesKeyWrap,
  aesKeyWrapPadded,
  unwrapKey,
  wrapKey,
} from './keywrap.ts';
export { HMAC_SHA256_TAG_BYTES, mac, verifyMac } from './hmac.ts';
export {
  ED25519_SIGNATURE_BYTES,
  Ed25519PrivateKey,
  Ed25519PublicKey,
  ed25519Sign,
  ed25519Verify,
} from './ed25519.ts';
export {
  EcdsaPrivateKey,
  EcdsaPublicKey,
  ecdsaDerToP1363,
  ecdsaP1363ToDer,
  ecdsaSign,
  ecdsaVerify,
} from './ecdsa.ts';
export type { EcdsaCurve, EcdsaSignatureEncoding } from './ecdsa.ts';
export { RsaOaepPrivateKey, RsaOaepPublicKey, rsaOaepDecrypt, rsaOaepEncrypt } from './rsa-oaep.ts';
export type { RsaModulusBits } from './rsa-oaep.ts';
export { X25519PrivateKey, X25519PublicKey, x25519SharedSecret } from './x25519.ts';
export {
  C2SP_AEAD_NAME,
  C2SP_CHUNK_SIZE,
  ChunkLayout,
  ChunkedDecryption,
  ChunkedEncryption,
  PREFIX_BYTES,
  TAG_BYTES,
  expandInputKey,
  openChunked,
  sealChunked,
} from './chunked.ts';

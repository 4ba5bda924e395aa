export * from './errors.ts';
export { constantTimeEqual, wipe, concatBytes } from './bytes.ts';
export {
  C2SP_AEAD_NAME,
  C2SP_CHUNK_SIZE,
  ChunkLayout,
  ChunkedDecryption,
  ChunkedEncryption,
  PREFIX_BYTES,
  TAG_BYTES,
  hkdfExpandSha512,
  openChunked,
  sealChunked,
} from './chunked.ts';

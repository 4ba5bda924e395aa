export * from './errors.ts';
export {
  DEFAULT_CHUNK_EXPONENT,
  MAX_CHUNK_EXPONENT,
  MIN_CHUNK_EXPONENT,
  MAX_HEADER_BYTES,
  parseHeader,
  slotLabel,
} from './header.ts';
export type { EncryptionContext, KeySlot, ParsedHeader, SlotType } from './header.ts';
export type { SlotUnwrapper, SlotWrapper } from './keys.ts';
export {
  collectBytes,
  decryptStream,
  encryptStream,
  prepareEncryption,
  openEnvelope,
  checkContext,
  DATA_KEY_BYTES,
} from './envelope.ts';
export type { DecryptOptions, EncryptOptions } from './envelope.ts';
export {
  EnvelopeFile,
  decryptFile,
  decryptFileToHandle,
  encryptFile,
  encryptFileToHandle,
  inspectFile,
  writeAtomically,
} from './files.ts';
export type { FileDecryptOptions, FileEncryptOptions, ProgressCallback } from './files.ts';
export { decryptDescriptor, encryptDescriptor } from './descriptors.ts';
export type { DescriptorEncryptOptions } from './descriptors.ts';
export {
  decryptFileParallel,
  decryptFileParallelTo,
  defaultThreads,
  encryptFileParallel,
  encryptFileParallelTo,
} from './parallel.ts';
export { FILE_SUFFIX, MANIFEST_NAME, decryptTree, encryptTree, listTree, treeEnvelopes } from './tree.ts';
export type { TreeEntry } from './tree.ts';
export { KmsSlots } from './kms-slots.ts';
export type { KmsDataKeyApi } from './kms-slots.ts';
export { rewrapFile } from './rewrap.ts';
export type { SlotRewrapper } from './rewrap.ts';

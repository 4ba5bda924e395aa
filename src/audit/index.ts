/**
 * Warden tamper-evident audit log: the pure core. RFC 6962 Merkle hashing, proofs and an append-efficient
 * frontier (`merkle.ts`), and C2SP signed-note checkpoints (`checkpoint.ts`). No storage and no I/O; see
 * docs/spec/audit-checkpoint.md.
 */
export {
  HASH_SIZE,
  leafHash,
  nodeHash,
  emptyRoot,
  isEmptyRoot,
  rootFromLeafHashes,
  planInclusionProof,
  planConsistencyProof,
  planRoot,
  assembleProof,
  inclusionProof,
  consistencyProof,
  rootAtSize,
  frontierCoords,
  MerkleFrontier,
  MemoryMerkleTree,
  verifyInclusion,
  verifyConsistency,
  MerkleProofError,
} from './merkle.ts';
export type {
  SubtreeCoord,
  SubtreeNode,
  SubtreeHashReader,
  ProofPlan,
  MerkleProofFailure,
} from './merkle.ts';

export {
  MAX_NOTE_SIGNATURES,
  ED25519_SIGNATURE_TYPE,
  NoteFormatError,
  NoteVerificationError,
  isValidKeyName,
  ed25519NoteKeyId,
  formatVerifierKey,
  parseVerifierKey,
  ed25519NoteVerifier,
  localEd25519NoteSigner,
  signNote,
  openNote,
  formatCheckpoint,
  parseCheckpoint,
  signCheckpoint,
  openCheckpoint,
} from './checkpoint.ts';
export type {
  NoteFormatFailure,
  NoteVerificationFailure,
  NoteSigner,
  NoteVerifier,
  Ed25519NoteSigner,
  Ed25519NoteVerifier,
  NoteSignature,
  OpenedNote,
  Checkpoint,
  OpenedCheckpoint,
} from './checkpoint.ts';
export { AuditHasher, JsonLinesAuditRecorder } from './recorder.ts';
export type { AuditEvent, AuditOutcome, AuditRecorder } from './recorder.ts';
export { AuditLog, AuditLogError, DEFAULT_RETENTION_MS, MAX_QUERY_LIMIT } from './log.ts';
export type {
  AuditLogOptions,
  AuditLogFailure,
  AuditEntry,
  AppendReceipt,
  StoredCheckpoint,
  AuditTime,
  AuditQuery,
  AuditQueryEntry,
  AuditQueryPage,
  AuditLineConsumer,
  AuditExportOptions,
  AuditExportSummary,
  AuditVerifyReport,
} from './log.ts';
export { auditLogMigrations } from './log-store.ts';
export type { AuditDB } from './log-store.ts';
export {
  verifyExport,
  verifyExportFile,
  readExportLines,
  eventMatchesLeaf,
  MAX_EXPORT_LINE_BYTES,
} from './verify.ts';
export type {
  ExportProblem,
  ExportProblemKind,
  ExportLine,
  ExportLines,
  PreviousCheckpoint,
  VerifyExportOptions,
  VerifyExportReport,
} from './verify.ts';
export * from './sinks/index.ts';

import type { Finding, FormatName, Verdict } from '../scanner/index.ts';
import type { ParameterValue, Sensitivity, Stage } from './names.ts';

/** Records the registry stores and returns. Times are epoch milliseconds. */

export type SubjectKind = 'model' | 'dataset';

export interface QuarantineState {
  readonly reason: string;
  readonly by: string;
  readonly at: number;
}

export interface ModelRecord {
  readonly id: string;
  readonly name: string;
  readonly owner: string | null;
  readonly description: string | null;
  readonly createdBy: string;
  readonly createdAt: number;
  readonly quarantine: QuarantineState | null;
}

/** A training dataset as recorded in a version's lineage (registered or external, always with a digest). */
export interface LineageDataset {
  readonly digest: string;
  readonly name: string | null;
  readonly version: string | null;
  /** Set when the digest is a registered dataset version. */
  readonly datasetVersionId: string | null;
}

export interface Lineage {
  readonly datasets: readonly LineageDataset[];
  readonly codeCommit: string | null;
  readonly codeRepository: string | null;
  readonly parameters: Readonly<Record<string, ParameterValue>>;
  /** The version this one was fine-tuned or derived from (same registry). */
  readonly parent: { readonly model: string; readonly version: string; readonly digest: string } | null;
}

export interface ScanSummary {
  /** Worst verdict over the files (clean < suspicious < error < malicious); null before the first scan. */
  readonly verdict: Verdict | null;
  readonly rulesVersion: string | null;
  readonly scannedAt: number | null;
}

export interface FileRecord {
  readonly path: string;
  readonly sha256: string;
  readonly size: number;
  readonly format: FormatName;
  readonly blobId: string;
}

export interface ScanRecord {
  readonly path: string;
  readonly verdict: Verdict;
  readonly findings: readonly Finding[];
  readonly rulesVersion: string;
  readonly format: FormatName;
  readonly scannedAt: number;
}

export interface ModelVersionRecord {
  readonly id: string;
  readonly modelId: string;
  readonly model: string;
  readonly version: string;
  /** OMS root digest over the files (hex SHA-256): the version's identity. */
  readonly digest: string;
  readonly size: number;
  readonly fileCount: number;
  /** Format of the largest file, detected from its bytes. */
  readonly format: FormatName;
  readonly description: string | null;
  readonly framework: string | null;
  readonly license: string | null;
  readonly lineage: Lineage;
  readonly createdBy: string;
  readonly createdAt: number;
  readonly scan: ScanSummary;
  readonly quarantine: QuarantineState | null;
}

export interface DatasetVersionRecord {
  readonly id: string;
  readonly datasetId: string;
  readonly dataset: string;
  readonly version: string;
  readonly digest: string;
  readonly size: number;
  readonly fileCount: number;
  readonly sensitivity: Sensitivity;
  readonly owner: string;
  readonly description: string | null;
  readonly createdBy: string;
  readonly createdAt: number;
  readonly scan: ScanSummary;
}

export interface SignatureRecord {
  readonly id: string;
  readonly subjectKind: SubjectKind;
  readonly subjectId: string;
  /** The Sigstore bundle as JSON text, exactly as produced or submitted. */
  readonly bundle: string;
  /** Who signed: `kms:<key>#<version>` for registry signatures, or the trusted signer id that verified it. */
  readonly signerIdentity: string;
  readonly signedBy: string;
  readonly signedAt: number;
  readonly verifiedAt: number | null;
  /** Id of the trusted signer (registry configuration) whose key verified the bundle. */
  readonly verifiedWith: string | null;
}

export interface StageRecord {
  readonly stage: Stage;
  readonly versionId: string;
  readonly version: string;
  readonly promotedBy: string;
  readonly promotedAt: number;
}

export type ApprovalStatus = 'pending' | 'approved' | 'superseded';

export interface ApprovalRecord {
  readonly id: string;
  readonly versionId: string;
  readonly model: string;
  readonly version: string;
  readonly stage: Stage;
  readonly requestedBy: string;
  readonly requestedAt: number;
  readonly status: ApprovalStatus;
  readonly approvedBy: string | null;
  readonly approvedAt: number | null;
}

export interface WaiverRecord {
  readonly id: string;
  readonly versionId: string;
  readonly reason: string;
  /** The worst verdict the waiver accepts: the version's verdict when it was granted. */
  readonly coversVerdict: Verdict;
  readonly rulesVersion: string;
  readonly waivedBy: string;
  readonly waivedAt: number;
  readonly expiresAt: number | null;
}

export interface ChangeRecord {
  readonly seq: number;
  readonly kind: 'quarantine' | 'release' | 'promote' | 'scan' | 'signature';
  readonly model: string;
  readonly version: string | null;
  readonly at: number;
}

import { DecryptionError, InvalidInputError, InvalidKeyError } from '../crypto/index.ts';
import {
  ContextMismatchError,
  KeyUnavailableError,
  MalformedEnvelopeError,
  OutputNotRegularFileError,
  TruncatedEnvelopeError,
} from '../envelope/index.ts';
import { KeyringError } from '../keyring/index.ts';

/** Exit codes of the `warden` CLI; documented in README.md and stable across releases. */
export const ExitCode = {
  ok: 0,
  internal: 1,
  usage: 2,
  io: 3,
  authentication: 4,
  malformed: 5,
  contextMismatch: 6,
  keyUnavailable: 7,
  /** The KMS refused the credentials (HTTP 401): no token, or a wrong one. */
  unauthenticated: 8,
  /** The KMS authenticated the caller but refused the operation (HTTP 403). */
  forbidden: 9,
  /** The KMS cannot serve now: sealed, audit unavailable (HTTP 503). */
  unavailable: 10,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** A user-facing failure with a stable code string, e.g. for `--json` error output. */
export class CliError extends Error {
  readonly exitCode: ExitCode;
  readonly code: string;
  constructor(code: string, message: string, exitCode: ExitCode) {
    super(message);
    this.code = code;
    this.exitCode = exitCode;
  }
}

export function classify(err: unknown): { exitCode: ExitCode; code: string; message: string } {
  if (err instanceof CliError) return { exitCode: err.exitCode, code: err.code, message: err.message };
  if (err instanceof DecryptionError) {
    return {
      exitCode: ExitCode.authentication,
      code: err.code,
      message: 'decryption failed: the data is corrupt or was tampered with, or the key does not match',
    };
  }
  if (err instanceof OutputNotRegularFileError)
    return { exitCode: ExitCode.io, code: err.code, message: err.message };
  if (err instanceof TruncatedEnvelopeError)
    return { exitCode: ExitCode.malformed, code: err.code, message: err.message };
  if (
    err instanceof MalformedEnvelopeError ||
    err instanceof InvalidInputError ||
    err instanceof InvalidKeyError
  ) {
    return { exitCode: ExitCode.malformed, code: err.code, message: err.message };
  }
  if (err instanceof ContextMismatchError)
    return { exitCode: ExitCode.contextMismatch, code: err.code, message: err.message };
  if (err instanceof KeyUnavailableError || err instanceof KeyringError) {
    return { exitCode: ExitCode.keyUnavailable, code: err.code, message: err.message };
  }
  const errno = err as NodeJS.ErrnoException;
  if (typeof errno.code === 'string' && typeof errno.syscall === 'string') {
    const reason: Record<string, string> = {
      ENOENT: 'no such file or directory',
      EACCES: 'permission denied',
      EEXIST: 'already exists',
      EISDIR: 'is a directory',
      ENOTDIR: 'not a directory',
      ENOSPC: 'no space left on device',
      EADDRINUSE: 'address already in use (another server listening there?)',
      EADDRNOTAVAIL: 'address not available on this machine',
      // `warden decrypt - | head`: the reader stopped early; what it read was authenticated.
      EPIPE: 'the output was closed before all of it was written',
    };
    // A listening socket's error names its address and port instead of a path.
    const { address, port } = errno as NodeJS.ErrnoException & { address?: string; port?: number };
    const where =
      errno.path !== undefined
        ? `${errno.path}: `
        : address !== undefined
          ? `${address}${port === undefined ? '' : `:${port}`}: `
          : '';
    return {
      exitCode: ExitCode.io,
      code: 'io_error',
      message: `${where}${reason[errno.code] ?? errno.code}`,
    };
  }
  return {
    exitCode: ExitCode.internal,
    code: 'internal_error',
    message: err instanceof Error ? err.message : String(err),
  };
}

import pkcs11js from 'pkcs11js';

/**
 * Failures of the HSM or of its configuration. Messages name the PKCS#11 function and its `CKR_*` result and
 * never carry the PIN, key material or the library's native stack; the original error is not attached.
 */
export type HsmErrorCode =
  | 'hsm_error'
  | 'hsm_config'
  | 'hsm_pin_incorrect'
  | 'hsm_token_not_found'
  | 'hsm_key_exists'
  | 'hsm_key_not_found'
  | 'hsm_wrong_key_type'
  | 'hsm_key_policy'
  | 'hsm_closed';

export class HsmError extends Error {
  readonly code: HsmErrorCode;
  /** The `CKR_*` name when the module returned an error code. */
  readonly ckr: string | undefined;

  constructor(code: HsmErrorCode, message: string, ckr?: string) {
    super(message);
    this.name = 'HsmError';
    this.code = code;
    this.ckr = ckr;
  }
}

/** The `CKR_*` name of a pkcs11js error, or undefined for anything else. */
export function ckrOf(error: unknown): string | undefined {
  if (error instanceof pkcs11js.Pkcs11Error && /^CKR_[A-Z0-9_]+$/.test(error.message)) return error.message;
  return undefined;
}

/** Converts whatever a pkcs11js call threw into an `HsmError` that is safe to log. */
export function hsmError(fn: string, error: unknown): HsmError {
  if (error instanceof HsmError) return error;
  const ckr = ckrOf(error);
  if (ckr === 'CKR_PIN_INCORRECT' || ckr === 'CKR_PIN_INVALID' || ckr === 'CKR_PIN_LEN_RANGE') {
    return new HsmError('hsm_pin_incorrect', `PKCS#11 ${fn} failed: ${ckr}`, ckr);
  }
  if (ckr !== undefined) return new HsmError('hsm_error', `PKCS#11 ${fn} failed: ${ckr}`, ckr);
  // Native and type errors: keep only the class name, their messages are not vetted.
  const kind = error instanceof Error ? error.name : typeof error;
  return new HsmError('hsm_error', `PKCS#11 ${fn} failed (${kind})`);
}

/** Runs one synchronous pkcs11js call, converting its errors. */
export function ck<T>(fn: string, call: () => T): T {
  try {
    return call();
  } catch (error) {
    throw hsmError(fn, error);
  }
}

/** Awaits one asynchronous pkcs11js call, converting its errors. */
export async function ckAsync<T>(fn: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw hsmError(fn, error);
  }
}

import { readFile } from 'node:fs/promises';
import { HsmError } from './errors.ts';

export const DEFAULT_ROOT_KEY_LABEL = 'warden-root';

export interface Pkcs11RootConfig {
  /** Path of the vendor's PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  readonly modulePath: string;
  /** Label of the token (not the slot number: slot numbering changes when tokens are added). */
  readonly tokenLabel: string;
  /** The user PIN. Omitted: the root opens sealed and `unseal(pin)` logs in later. */
  readonly pin?: string | undefined;
  /** Label of the root key object on the token; default `warden-root`. */
  readonly rootKeyLabel?: string | undefined;
}

/**
 * Reads the PKCS#11 configuration from the environment:
 *
 * - `WARDEN_PKCS11_MODULE` (required), `WARDEN_PKCS11_TOKEN_LABEL` (required),
 * - `WARDEN_PKCS11_PIN` or `WARDEN_PKCS11_PIN_FILE` (at most one; neither: open sealed),
 * - `WARDEN_PKCS11_ROOT_KEY_LABEL` (optional).
 *
 * A PIN file holds the PIN alone; one trailing newline is ignored. The PIN is never part of an error message.
 */
export async function pkcs11ConfigFromEnv(env: NodeJS.ProcessEnv = process.env): Promise<Pkcs11RootConfig> {
  const modulePath = env.WARDEN_PKCS11_MODULE;
  const tokenLabel = env.WARDEN_PKCS11_TOKEN_LABEL;
  if (modulePath === undefined || modulePath === '') {
    throw new HsmError('hsm_config', 'WARDEN_PKCS11_MODULE is not set');
  }
  if (tokenLabel === undefined || tokenLabel === '') {
    throw new HsmError('hsm_config', 'WARDEN_PKCS11_TOKEN_LABEL is not set');
  }
  const pinValue = env.WARDEN_PKCS11_PIN;
  const pinFile = env.WARDEN_PKCS11_PIN_FILE;
  if (pinValue !== undefined && pinFile !== undefined) {
    throw new HsmError('hsm_config', 'set WARDEN_PKCS11_PIN or WARDEN_PKCS11_PIN_FILE, not both');
  }
  let pin = pinValue;
  if (pinFile !== undefined) {
    try {
      pin = (await readFile(pinFile, 'utf8')).replace(/\r?\n$/, '');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'unknown error';
      throw new HsmError('hsm_config', `cannot read WARDEN_PKCS11_PIN_FILE ${pinFile}: ${code}`);
    }
  }
  if (pin === '') throw new HsmError('hsm_config', 'the PKCS#11 PIN is empty');
  const rootKeyLabel = env.WARDEN_PKCS11_ROOT_KEY_LABEL;
  return {
    modulePath,
    tokenLabel,
    pin,
    rootKeyLabel: rootKeyLabel === undefined || rootKeyLabel === '' ? DEFAULT_ROOT_KEY_LABEL : rootKeyLabel,
  };
}

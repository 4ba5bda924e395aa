import pkcs11js from 'pkcs11js';
import { HsmError, ck, ckrOf, hsmError } from './errors.ts';

/**
 * One loaded PKCS#11 module per library path per process. The library is `dlopen`ed once and never closed
 * (SoftHSM and several vendor libraries do not survive a `dlclose`/`dlopen` cycle); `C_Initialize` runs when the
 * first user arrives and `C_Finalize` when the last one leaves. Login state in PKCS#11 belongs to the
 * application and the token, not to a session, so each token is open at most once per process: a second
 * `open` of the same token is refused rather than silently sharing (and being sealed by) another instance's
 * login.
 */
export interface LoadedModule {
  readonly path: string;
  readonly p11: pkcs11js.PKCS11;
}

interface ModuleState extends LoadedModule {
  users: number;
  /** False when someone else in the process had initialised the library: then it is theirs to finalise. */
  ownsInitialization: boolean;
  readonly openTokens: Set<string>;
}

const loaded = new Map<string, ModuleState>();

function stateOf(module: LoadedModule): ModuleState {
  const state = loaded.get(module.path);
  if (state?.p11 !== module.p11) throw new HsmError('hsm_closed', 'PKCS#11 module handle is stale');
  return state;
}

export function acquireModule(path: string): LoadedModule {
  let state = loaded.get(path);
  if (state === undefined) {
    const p11 = new pkcs11js.PKCS11();
    ck('load', () => {
      p11.load(path);
    });
    state = { path, p11, users: 0, ownsInitialization: false, openTokens: new Set() };
    loaded.set(path, state);
  }
  if (state.users === 0) {
    const { p11 } = state;
    try {
      // The *Async calls run on libuv's thread pool: the library must do its own locking.
      p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
      state.ownsInitialization = true;
    } catch (error) {
      if (ckrOf(error) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') throw hsmError('C_Initialize', error);
      state.ownsInitialization = false;
    }
  }
  state.users++;
  return state;
}

export function releaseModule(module: LoadedModule): void {
  const state = stateOf(module);
  if (state.users <= 0) return;
  state.users--;
  if (state.users === 0 && state.ownsInitialization) {
    state.ownsInitialization = false;
    ck('C_Finalize', () => {
      state.p11.C_Finalize();
    });
  }
}

/** Finds the one slot whose token carries `label` (labels are blank-padded to 32 bytes on the token). */
export function findTokenSlot(module: LoadedModule, label: string): pkcs11js.Handle {
  const { p11 } = module;
  const matches = ck('C_GetSlotList', () => p11.C_GetSlotList(true)).filter(
    (slot) => ck('C_GetTokenInfo', () => p11.C_GetTokenInfo(slot)).label.trimEnd() === label,
  );
  const [slot] = matches;
  if (slot === undefined) throw new HsmError('hsm_token_not_found', `no PKCS#11 token labelled "${label}"`);
  if (matches.length > 1) {
    throw new HsmError('hsm_config', `${matches.length} PKCS#11 tokens are labelled "${label}"`);
  }
  const flags = ck('C_GetTokenInfo', () => p11.C_GetTokenInfo(slot)).flags;
  if ((flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0 || (flags & pkcs11js.CKF_USER_PIN_INITIALIZED) === 0) {
    throw new HsmError('hsm_config', `PKCS#11 token "${label}" is not initialised (token or user PIN)`);
  }
  if ((flags & pkcs11js.CKF_USER_PIN_LOCKED) !== 0) {
    throw new HsmError('hsm_config', `the user PIN of PKCS#11 token "${label}" is locked`);
  }
  return slot;
}

/** Marks a token open in this process; false if it already is. */
export function claimToken(module: LoadedModule, slot: pkcs11js.Handle): boolean {
  const tokens = stateOf(module).openTokens;
  const key = slot.toString('hex');
  if (tokens.has(key)) return false;
  tokens.add(key);
  return true;
}

export function releaseToken(module: LoadedModule, slot: pkcs11js.Handle): void {
  stateOf(module).openTokens.delete(slot.toString('hex'));
}

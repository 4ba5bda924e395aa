import { BlockList, isIP } from 'node:net';
import type { Principal } from '../kms/index.ts';
import { InvalidInputError } from '../crypto/index.ts';

/**
 * Step-up: before a sensitive operation, has this session passed MFA recently enough? The authoritative check
 * is the Cedar guardrail (`guardrail.key-destroy-step-up-mfa`, `context.mfaAgeSeconds < N`, docs/policy.md);
 * this helper lets the HTTP layer answer "step up" (re-authenticate with a second factor) instead of a bare
 * denial, and it is never looser than that guardrail for the same `maxMfaAgeSeconds`.
 *
 * `mfaAt` is set when a session is issued: by a TOTP or WebAuthn second factor (the moment it verified), or by
 * an OIDC login whose `amr` reports MFA (the provider's `auth_time`, see `oidcMfaAt`).
 */

/** MFA older than this many seconds (or from the future beyond this skew) does not count. */
const FUTURE_SKEW_MS = 60_000;

export interface StepUpOptions {
  /** MFA must be younger than this (same meaning as the guardrail's `mfaAgeSeconds < N`). */
  readonly maxMfaAgeSeconds: number;
  /**
   * CIDR ranges of known networks (corporate, VPN). When given, a request from outside them, or whose source
   * address is unknown, must meet `outsideMaxMfaAgeSeconds` instead: known networks never relax the rule.
   */
  readonly knownNetworks?: readonly string[];
  /** Default: a third of `maxMfaAgeSeconds` (at least 1). Must not exceed `maxMfaAgeSeconds`. */
  readonly outsideMaxMfaAgeSeconds?: number;
  /** Epoch ms; default now. */
  readonly now?: number;
}

export type StepUpReason = 'no_mfa' | 'mfa_stale' | 'mfa_time_invalid';

export type StepUpDecision =
  | { readonly required: false; readonly mfaAgeSeconds: number }
  | { readonly required: true; readonly reason: StepUpReason; readonly outsideKnownNetworks: boolean };

/** Seconds since the principal's last MFA, as Cedar's `context.mfaAgeSeconds`; undefined when none or invalid. */
export function mfaAgeSeconds(
  principal: Pick<Principal, 'mfaAt'>,
  now: number = Date.now(),
): number | undefined {
  const at = principal.mfaAt;
  if (at === undefined || !Number.isFinite(at) || at > now + FUTURE_SKEW_MS) return undefined;
  return Math.max(0, Math.floor((now - at) / 1000));
}

function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [address = '', bits = ''] = cidr.split('/');
    const family = isIP(address);
    const prefix = Number(bits);
    if (family === 0 || !/^\d{1,3}$/.test(bits) || prefix > (family === 4 ? 32 : 128)) {
      throw new InvalidInputError(`not a CIDR range: ${JSON.stringify(cidr)}`);
    }
    list.addSubnet(address, prefix, family === 4 ? 'ipv4' : 'ipv6');
  }
  return list;
}

function inNetworks(list: BlockList, ip: string | undefined): boolean {
  if (ip === undefined) return false;
  const family = isIP(ip);
  if (family === 0) return false;
  return list.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * Whether `principal` must step up (pass a second factor again) before a sensitive operation:
 * - no MFA in this session → `no_mfa`;
 * - `mfaAt` more than a minute in the future (clock trouble, forged value) → `mfa_time_invalid`;
 * - MFA age ≥ the applicable maximum → `mfa_stale`. The maximum is `maxMfaAgeSeconds`, or
 *   `outsideMaxMfaAgeSeconds` when `knownNetworks` is given and `principal.request.sourceIp` is not in them.
 * Service principals are not exempt here: callers decide which principals the check applies to (the guardrail
 * applies it to users only).
 */
export function stepUpRequired(
  principal: Pick<Principal, 'mfaAt' | 'request'>,
  options: StepUpOptions,
): StepUpDecision {
  const max = options.maxMfaAgeSeconds;
  if (!Number.isSafeInteger(max) || max <= 0)
    throw new InvalidInputError('maxMfaAgeSeconds must be a positive integer');
  let limit = max;
  let outside = false;
  if (options.knownNetworks !== undefined) {
    const outsideMax = options.outsideMaxMfaAgeSeconds ?? Math.max(1, Math.floor(max / 3));
    if (!Number.isSafeInteger(outsideMax) || outsideMax <= 0 || outsideMax > max) {
      throw new InvalidInputError(
        'outsideMaxMfaAgeSeconds must be a positive integer not above maxMfaAgeSeconds',
      );
    }
    outside = !inNetworks(blockList(options.knownNetworks), principal.request?.sourceIp);
    if (outside) limit = outsideMax;
  }
  const now = options.now ?? Date.now();
  if (principal.mfaAt === undefined)
    return { required: true, reason: 'no_mfa', outsideKnownNetworks: outside };
  const age = mfaAgeSeconds(principal, now);
  if (age === undefined) return { required: true, reason: 'mfa_time_invalid', outsideKnownNetworks: outside };
  if (age >= limit) return { required: true, reason: 'mfa_stale', outsideKnownNetworks: outside };
  return { required: false, mfaAgeSeconds: age };
}

/** RFC 8176 `amr` values that mean a second factor was used at the identity provider. */
export const DEFAULT_MFA_AMR_VALUES: readonly string[] = ['mfa', 'hwk', 'otp', 'sms', 'sc'];

/**
 * The `mfaAt` an OIDC login earns: the provider's `auth_time` when its `amr` reports a second factor, else
 * undefined (the session then has no MFA and must step up with Warden's own second factor). Without
 * `auth_time` the time of MFA is unknown, and the ID token's `iat` is not a substitute: it can be much later
 * than the authentication (single sign-on).
 */
export function oidcMfaAt(
  identity: { readonly amr: readonly string[]; readonly authTime?: number },
  mfaAmrValues: readonly string[] = DEFAULT_MFA_AMR_VALUES,
): number | undefined {
  if (identity.authTime === undefined) return undefined;
  return identity.amr.some((value) => mfaAmrValues.includes(value)) ? identity.authTime : undefined;
}

import type { Principal } from './types.ts';

/**
 * The single authorisation call-out of the KMS. Until the Cedar policy engine lands it enforces built-in roles;
 * Cedar policies replace `BuiltInRoleAuthorizer` behind this same interface.
 */
export const KMS_ACTIONS = [
  'keys.create',
  'keys.read',
  'keys.list',
  'keys.rotate',
  'keys.update',
  'keys.disable',
  'keys.enable',
  'keys.destroy',
  'keys.import',
  /** Fetching the public key BYOK blobs are wrapped for (granted wherever `keys.import` is). */
  'keys.import-wrapping-key',
  'keys.export',
  'crypto.encrypt',
  'crypto.decrypt',
  'crypto.generate-data-key',
  'crypto.decrypt-data-key',
  'crypto.rewrap',
  'crypto.sign',
  'crypto.verify',
  'crypto.hmac',
  'crypto.verify-hmac',
  'crypto.random',
] as const;
export type KmsAction = (typeof KMS_ACTIONS)[number];

export interface Authorizer {
  authorize(principal: Principal, action: KmsAction, resource: string): boolean;
}

/** Administration: every `keys.*` action but export, which only admin and key-custodian get. */
const ADMIN_ACTIONS = KMS_ACTIONS.filter((a) => a.startsWith('keys.') && a !== 'keys.export');
/** Use: every `crypto.*` action, plus reading the metadata of the keys used. */
const USE_ACTIONS = KMS_ACTIONS.filter((a) => a.startsWith('crypto.') || a === 'keys.read');

/**
 * Built-in roles: `admin` may do everything; `key-custodian` administers keys (create, rotate, states,
 * destruction, import, export) but cannot use them; `key-user` uses keys (crypto operations) but cannot change
 * them; `auditor` reads key metadata. `system` is the scheduler.
 */
export const BUILT_IN_ROLES: Readonly<Record<string, readonly KmsAction[]>> = {
  admin: KMS_ACTIONS,
  'key-custodian': [...ADMIN_ACTIONS, 'keys.export'],
  'key-user': USE_ACTIONS,
  auditor: ['keys.read', 'keys.list'],
  system: ['keys.rotate', 'keys.update', 'keys.destroy', 'keys.read'],
};

export class BuiltInRoleAuthorizer implements Authorizer {
  authorize(principal: Principal, action: KmsAction): boolean {
    return principal.roles.some((role) => BUILT_IN_ROLES[role]?.includes(action) === true);
  }
}

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

const ADMIN_ACTIONS: readonly KmsAction[] = [
  'keys.create',
  'keys.read',
  'keys.list',
  'keys.rotate',
  'keys.update',
  'keys.disable',
  'keys.enable',
  'keys.destroy',
  'keys.import',
];
const USE_ACTIONS: readonly KmsAction[] = [
  'keys.read',
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
];

/**
 * Built-in roles: `admin` may do everything; `key-custodian` administers keys (create, rotate, states,
 * destruction, import, export) but cannot use them; `key-user` uses keys (crypto operations) but cannot change
 * them; `auditor` reads key metadata. `system` is the scheduler. Keys whose name starts with a role's declared
 * prefix scope could come later through Cedar.
 */
export const BUILT_IN_ROLES: Readonly<Record<string, readonly KmsAction[]>> = {
  admin: [...ADMIN_ACTIONS, ...USE_ACTIONS, 'keys.export'],
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

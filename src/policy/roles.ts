import { isIP } from 'node:net';

/**
 * Built-in roles as Cedar policies. A principal holds a role when `Warden::Role::"<name>"` is among its ancestors
 * (the engine makes every role of the request a parent of the principal entity). Cedar is default-deny and a
 * matching `forbid` overrides every `permit`, so a role only ever grants; guardrails (below) only ever take away.
 *
 * The KMS roles (`admin`, `key-custodian`, `key-user`, `auditor`, `system`) reproduce `BUILT_IN_ROLES` of
 * src/kms/authz.ts action for action (test/policy/kms-adapter.test.ts checks every pair).
 */
export const BUILT_IN_ROLE_NAMES = [
  'admin',
  'security-admin',
  'key-custodian',
  'key-user',
  'auditor',
  'data-scientist',
  'ml-engineer',
  'business-user',
  'system',
] as const;
export type BuiltInRole = (typeof BUILT_IN_ROLE_NAMES)[number];

const KEY_ADMIN = `Warden::Action::"kms.keys.create",
    Warden::Action::"kms.keys.read",
    Warden::Action::"kms.keys.list",
    Warden::Action::"kms.keys.rotate",
    Warden::Action::"kms.keys.update",
    Warden::Action::"kms.keys.disable",
    Warden::Action::"kms.keys.enable",
    Warden::Action::"kms.keys.destroy",
    Warden::Action::"kms.keys.import",
    Warden::Action::"kms.keys.import-wrapping-key"`;

const KEY_USE = `Warden::Action::"kms.keys.read",
    Warden::Action::"kms.crypto.encrypt",
    Warden::Action::"kms.crypto.decrypt",
    Warden::Action::"kms.crypto.generate-data-key",
    Warden::Action::"kms.crypto.decrypt-data-key",
    Warden::Action::"kms.crypto.rewrap",
    Warden::Action::"kms.crypto.sign",
    Warden::Action::"kms.crypto.verify",
    Warden::Action::"kms.crypto.hmac",
    Warden::Action::"kms.crypto.verify-hmac",
    Warden::Action::"kms.crypto.random"`;

/** Policy id → Cedar text. Ids are what `Decision.reasons` reports. */
export const BUILT_IN_POLICIES: Readonly<Record<string, string>> = {
  // Everything, everywhere (still subject to every forbid guardrail).
  'role.admin': `permit (principal in Warden::Role::"admin", action, resource);`,

  // Every principal manages its own second factors and API keys (the routes name the caller's own Identity), but
  // through Cedar, so that a guardrail (a session used from a new network) or a custom forbid stops it too.
  'self-service': `permit (principal, action == Warden::Action::"identity.self", resource);`,

  // Keys (administration only, no cryptographic use), policies, identities, the internal CA; reads audit;
  // quarantines and releases models and grants scan waivers.
  'role.security-admin': `permit (
  principal in Warden::Role::"security-admin",
  action in [
    ${KEY_ADMIN},
    Warden::Action::"policy.read",
    Warden::Action::"policy.write",
    Warden::Action::"identity.read",
    Warden::Action::"identity.manage",
    Warden::Action::"audit.read",
    Warden::Action::"audit.verify",
    Warden::Action::"model.quarantine",
    Warden::Action::"model.release",
    Warden::Action::"model.waive",
    Warden::Action::"model.verify",
    Warden::Action::"ca.issue",
    Warden::Action::"ca.revoke",
    Warden::Action::"ca.read"
  ],
  resource
);`,

  // Administers keys (create, rotate, states, destruction, import, export) but cannot use them.
  'role.key-custodian': `permit (
  principal in Warden::Role::"key-custodian",
  action in [
    ${KEY_ADMIN},
    Warden::Action::"kms.keys.export"
  ],
  resource
);`,

  // Uses keys (cryptographic operations) but cannot change them.
  'role.key-user': `permit (
  principal in Warden::Role::"key-user",
  action in [
    ${KEY_USE}
  ],
  resource
);`,

  // Read-only: audit trail and its evidence (verify, export), key metadata, policies, identities, models.
  'role.auditor': `permit (
  principal in Warden::Role::"auditor",
  action in [
    Warden::Action::"kms.keys.read",
    Warden::Action::"kms.keys.list",
    Warden::Action::"audit.read",
    Warden::Action::"audit.verify",
    Warden::Action::"audit.export",
    Warden::Action::"policy.read",
    Warden::Action::"identity.read",
    Warden::Action::"model.read",
    Warden::Action::"model.verify",
    Warden::Action::"dataset.verify",
    Warden::Action::"ca.read"
  ],
  resource
);`,

  // Reads, registers and signs training data; registers, reads, scans and verifies models. No dataset
  // export/modify, no promote/deploy (default deny).
  'role.data-scientist': `permit (
  principal in Warden::Role::"data-scientist",
  action in [
    Warden::Action::"dataset.read",
    Warden::Action::"dataset.register",
    Warden::Action::"dataset.sign",
    Warden::Action::"dataset.verify",
    Warden::Action::"model.register",
    Warden::Action::"model.read",
    Warden::Action::"model.scan",
    Warden::Action::"model.verify"
  ],
  resource
);`,

  // Ships models: registers, signs, promotes (and approves others' promotions to prod), deploys, quarantines,
  // scans and verifies; reads and verifies (never modifies) training data. Waivers and releases from
  // quarantine belong to security-admin.
  'role.ml-engineer': `permit (
  principal in Warden::Role::"ml-engineer",
  action in [
    Warden::Action::"dataset.read",
    Warden::Action::"model.read",
    Warden::Action::"model.register",
    Warden::Action::"model.sign",
    Warden::Action::"model.promote",
    Warden::Action::"model.approve",
    Warden::Action::"model.deploy",
    Warden::Action::"model.quarantine",
    Warden::Action::"model.scan",
    Warden::Action::"model.verify",
    Warden::Action::"dataset.verify"
  ],
  resource
);`,
  // ... and invokes non-production endpoints to test them.
  'role.ml-engineer.invoke-nonprod': `permit (
  principal in Warden::Role::"ml-engineer",
  action == Warden::Action::"endpoint.invoke",
  resource is Warden::Endpoint
)
when { resource.environment != "prod" };`,

  // Invokes production endpoints, nothing else.
  'role.business-user': `permit (
  principal in Warden::Role::"business-user",
  action == Warden::Action::"endpoint.invoke",
  resource is Warden::Endpoint
)
when { resource.environment == "prod" };`,

  // The KMS scheduler: rotation, metadata updates, scheduled destruction.
  'role.system': `permit (
  principal in Warden::Role::"system",
  action in [
    Warden::Action::"kms.keys.rotate",
    Warden::Action::"kms.keys.update",
    Warden::Action::"kms.keys.destroy",
    Warden::Action::"kms.keys.read"
  ],
  resource
);`,
};

/** Options of the ABAC guardrails; each one left out is not installed. */
export interface GuardrailOptions {
  /** Restricted datasets only Mon–Fri within [startMinute, endMinute) of `context.now` (default 08:00–18:00). */
  readonly restrictedDataBusinessHours?:
    boolean | { readonly startMinute: number; readonly endMinute: number };
  /** Production endpoints only from these CIDR ranges (`context.sourceIp`). */
  readonly corporateCidrs?: readonly string[];
  /** Key destruction by a `User` only with `context.mfaAgeSeconds` below this (900 = 15 minutes). */
  readonly stepUpMfaMaxAgeSeconds?: number;
  /**
   * A user's session is refused from a network (IPv4 /24, IPv6 /48) other than the one it logged in from, until
   * the user logs in again there (`context.networkChanged`).
   */
  readonly reauthenticateOnNewNetwork?: boolean;
}

export class GuardrailConfigError extends Error {
  override readonly name = 'GuardrailConfigError';
}

const CIDR_PATTERN = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/;

function checkCidr(cidr: string): string {
  const match = CIDR_PATTERN.exec(cidr);
  const address = match?.[1];
  const bits = Number(match?.[2]);
  const family = address === undefined ? 0 : isIP(address);
  if (family === 0 || bits > (family === 4 ? 32 : 128)) {
    throw new GuardrailConfigError(`not a CIDR range: ${JSON.stringify(cidr)}`);
  }
  return cidr;
}

/**
 * The documented ABAC examples, as `forbid` policies. Each fails closed: when the context attribute it needs is
 * absent (a caller that does not know the time, the address or the MFA age), the forbid applies.
 */
export function guardrailPolicies(options: GuardrailOptions): Record<string, string> {
  const policies: Record<string, string> = {};
  // The options usually come from a JSON file: a setting of the wrong type stops the start, as an unknown one
  // does, instead of leaving its guardrail off (`"reauthenticateOnNewNetwork": "true"`) or failing on a TypeError.
  const hours: unknown = options.restrictedDataBusinessHours;
  if (hours !== undefined && hours !== false) {
    if (hours !== true && (typeof hours !== 'object' || hours === null)) {
      throw new GuardrailConfigError(
        'restrictedDataBusinessHours must be true, false or { startMinute, endMinute }',
      );
    }
    const { startMinute, endMinute } =
      hours === true
        ? { startMinute: 8 * 60, endMinute: 18 * 60 }
        : (hours as { startMinute?: unknown; endMinute?: unknown });
    if (
      typeof startMinute !== 'number' ||
      typeof endMinute !== 'number' ||
      !Number.isInteger(startMinute) ||
      !Number.isInteger(endMinute) ||
      startMinute < 0 ||
      endMinute > 1440 ||
      startMinute >= endMinute
    ) {
      throw new GuardrailConfigError('business hours must be whole minutes with 0 <= start < end <= 1440');
    }
    policies['guardrail.restricted-data-business-hours'] =
      `forbid (principal, action, resource is Warden::Dataset)
when { resource.sensitivity == "restricted" }
unless {
  context has now &&
  context.now.dayOfWeek >= 1 && context.now.dayOfWeek <= 5 &&
  context.now.minuteOfDay >= ${startMinute} && context.now.minuteOfDay < ${endMinute}
};`;
  }
  const cidrs: unknown = options.corporateCidrs;
  if (cidrs !== undefined) {
    if (!Array.isArray(cidrs) || !cidrs.every((c) => typeof c === 'string')) {
      throw new GuardrailConfigError('corporateCidrs must be an array of CIDR strings');
    }
    const ranges = cidrs.map(checkCidr);
    const inRange =
      ranges.length === 0
        ? 'false'
        : ranges.map((cidr) => `context.sourceIp.isInRange(ip("${cidr}"))`).join(' ||\n    ');
    policies['guardrail.prod-endpoints-corporate-network'] = `forbid (
  principal,
  action == Warden::Action::"endpoint.invoke",
  resource is Warden::Endpoint
)
when { resource.environment == "prod" }
unless {
  context has sourceIp && (
    ${inRange}
  )
};`;
  }
  const maxAge = options.stepUpMfaMaxAgeSeconds;
  if (maxAge !== undefined) {
    if (!Number.isSafeInteger(maxAge) || maxAge <= 0) {
      throw new GuardrailConfigError('stepUpMfaMaxAgeSeconds must be a positive integer');
    }
    policies['guardrail.key-destroy-step-up-mfa'] = `forbid (
  principal is Warden::User,
  action == Warden::Action::"kms.keys.destroy",
  resource
)
unless { context has mfaAgeSeconds && context.mfaAgeSeconds < ${maxAge} };`;
  }
  const reauthenticate: unknown = options.reauthenticateOnNewNetwork;
  if (reauthenticate !== undefined && typeof reauthenticate !== 'boolean') {
    throw new GuardrailConfigError('reauthenticateOnNewNetwork must be true or false');
  }
  if (reauthenticate === true) {
    policies['guardrail.reauthenticate-on-new-network'] =
      `forbid (principal is Warden::User, action, resource)
when { context has networkChanged && context.networkChanged };`;
  }
  return policies;
}

import { isIP } from 'node:net';
import type { Authorizer, KmsAction } from '../kms/index.ts';
import type { Principal } from '../kms/index.ts';
import type { AuthzContext, AuthzPrincipal, PolicyEngine } from './engine.ts';
import { networkOf } from './network.ts';
import { kmsCedarAction } from './schema.ts';

export interface KmsAuthorizerOptions {
  /** Extra context for a call (e.g. MFA age from the session); merged over what the principal carries. */
  readonly context?: (principal: Principal, action: KmsAction, resource: string) => AuthzContext;
  /** Called with every denial's reasons and errors (e.g. to log evaluation errors). */
  readonly onDeny?: (
    principal: Principal,
    action: KmsAction,
    resource: string,
    errors: readonly string[],
  ) => void;
}

/**
 * A Warden principal as a Cedar principal: service accounts (`kind: 'service'`, internal callers, `system:` and
 * `service:` ids) or users; roles become `Warden::Role` parents, and a user's groups `Warden::Group` parents.
 */
export function kmsPrincipal(principal: Principal): AuthzPrincipal {
  const service =
    principal.kind === 'service' ||
    principal.authMethod === 'internal' ||
    principal.id.startsWith('system:') ||
    principal.id.startsWith('service:');
  if (service) return { type: 'ServiceAccount', id: principal.id, roles: principal.roles };
  return {
    type: 'User',
    id: principal.id,
    roles: principal.roles,
    ...(principal.groups === undefined ? {} : { groups: principal.groups }),
  };
}

/** The purposes a request may declare (`X-Warden-Purpose`); any other value is no declaration at all. */
export const PURPOSE_PATTERN = /^[a-z][a-z0-9._-]{0,63}$/;

/** The purpose a request's `X-Warden-Purpose` header declares, when it is well-formed. */
export function declaredPurpose(header: string | readonly string[] | undefined): string | undefined {
  return typeof header === 'string' && PURPOSE_PATTERN.test(header) ? header : undefined;
}

/**
 * The ABAC context a principal carries: how it authenticated, from where (its request's source address), how
 * long ago it passed MFA, and the purpose its request declared. Callers add the deployment's environment.
 */
export function principalContext(principal: Principal, now: number = Date.now()): AuthzContext {
  const sourceIp = principal.request?.sourceIp;
  const purpose = principal.request?.purpose;
  const network = sourceIp === undefined ? undefined : networkOf(sourceIp);
  return {
    authMethod: principal.authMethod,
    ...(purpose === undefined ? {} : { purpose }),
    ...(sourceIp === undefined || isIP(sourceIp) === 0 ? {} : { sourceIp }),
    ...(principal.loginNetwork === undefined || network === undefined
      ? {}
      : { networkChanged: network !== principal.loginNetwork }),
    ...(principal.mfaAt === undefined
      ? {}
      : { mfaAgeSeconds: Math.max(0, Math.floor((now - principal.mfaAt) / 1000)) }),
  };
}

/**
 * The KMS resource string as a `Key` id: `key:<name>` → `<name>`; the collection-level `key:*` (list, bulk import),
 * an unparseable ciphertext's `key:?`, and non-key resources (`random`) → `*`. Key names never contain `*` or `?`
 * (KEY_NAME_PATTERN), so these ids cannot collide with a real key.
 */
export function kmsKeyId(resource: string): string {
  if (!resource.startsWith('key:')) return '*';
  const name = resource.slice(4);
  return name === '' ? '*' : name;
}

/**
 * Implements the KMS `Authorizer` on the policy engine: KmsAction `keys.create` → `Warden::Action::"kms.keys.create"`,
 * resource `key:<name>` → `Warden::Key::"<name>"`, the principal's roles → `Warden::Role` parents, and its
 * request's source address and auth method → context. Drop-in replacement for `BuiltInRoleAuthorizer`.
 */
export function cedarKmsAuthorizer(engine: PolicyEngine, options: KmsAuthorizerOptions = {}): Authorizer {
  return {
    authorize(principal: Principal, action: KmsAction, resource: string): boolean {
      const context: AuthzContext = {
        ...principalContext(principal),
        ...options.context?.(principal, action, resource),
      };
      const decision = engine.authorize({
        principal: kmsPrincipal(principal),
        action: kmsCedarAction(action),
        resource: { type: 'Key', id: kmsKeyId(resource) },
        context,
      });
      if (decision.decision !== 'allow') options.onDeny?.(principal, action, resource, decision.errors);
      return decision.decision === 'allow';
    },
  };
}

import type { FastifyRequest, RouteOptions } from 'fastify';
import type { AuditRecorder } from '../audit/index.ts';
import type { Principal } from '../kms/index.ts';
import { isActionId, kmsPrincipal, principalContext } from '../policy/index.ts';
import type {
  ActionId,
  AuthzContext,
  AuthzResource,
  Decision,
  PolicyEngine,
  PolicyStore,
} from '../policy/index.ts';
import { requestEvent } from './context.ts';
import { PermissionDeniedError } from './errors.ts';

/**
 * What every route declares at registration (Fastify route `config`): reachable without credentials, or the
 * Cedar action it performs and the resource it performs it on. The KMS routes name their action and leave the
 * per-key decision to the KMS service, which asks the same policy engine for every key an item touches (one
 * batch request can name several keys, so no single route-level resource exists).
 */
export type RouteAuthz =
  | { readonly public: true }
  | {
      readonly action: ActionId;
      readonly resource: (request: FastifyRequest) => AuthzResource | Promise<AuthzResource>;
    }
  | { readonly action: ActionId; readonly authorizedBy: 'kms' };

declare module 'fastify' {
  interface FastifyContextConfig {
    public?: true;
    action?: ActionId;
    resource?: (request: FastifyRequest) => AuthzResource | Promise<AuthzResource>;
    authorizedBy?: 'kms';
  }
}

export class RouteDeclarationError extends Error {
  override readonly name = 'RouteDeclarationError';
}

/** The declaration of a route being registered; throws when it has none, so an undeclared route cannot exist. */
export function routeAuthzOf(route: RouteOptions): RouteAuthz {
  const config = (route.config ?? {}) as Partial<
    Record<'public' | 'action' | 'resource' | 'authorizedBy', unknown>
  >;
  const where = `${String(route.method)} ${route.url}`;
  if (config.public === true) {
    if (config.action !== undefined)
      throw new RouteDeclarationError(`${where}: a public route has no action`);
    return { public: true };
  }
  if (typeof config.action !== 'string' || !isActionId(config.action)) {
    throw new RouteDeclarationError(
      `${where}: every route declares config.action (a Cedar action of the Warden schema) or config.public`,
    );
  }
  if (config.authorizedBy === 'kms') return { action: config.action, authorizedBy: 'kms' };
  if (typeof config.resource !== 'function') {
    throw new RouteDeclarationError(
      `${where}: config.resource(request) must name the resource of ${config.action}`,
    );
  }
  return {
    action: config.action,
    resource: config.resource as (request: FastifyRequest) => AuthzResource | Promise<AuthzResource>,
  };
}

/** The ABAC context of a request: the principal's (address, method, MFA age, declared purpose), environment. */
export function requestContext(principal: Principal, environment: string): AuthzContext {
  return { ...principalContext(principal), environment };
}

export interface RouteAuthorizer {
  /** Resolves when the principal may perform the route's action; rejects with `PermissionDeniedError`. */
  check(request: FastifyRequest, principal: Principal, authz: RouteAuthz): Promise<void>;
}

/**
 * Authorises a request against its route's declaration with Cedar. A denial is audited (`authz.denied`, with the
 * determining policies) and answered 403 whether or not the audit record could be written: failing to record
 * a refusal must not turn it into an acceptance.
 */
export function cedarRouteAuthorizer(
  engine: PolicyEngine,
  environment: string,
  audit: AuditRecorder | undefined,
): RouteAuthorizer {
  return {
    async check(request, principal, authz) {
      if ('public' in authz || 'authorizedBy' in authz) return;
      const resource = await authz.resource(request);
      const decision = engine.authorize({
        principal: kmsPrincipal(principal),
        action: authz.action,
        resource,
        context: requestContext(principal, environment),
      });
      if (decision.decision === 'allow') return;
      await audit
        ?.record(
          requestEvent(
            request,
            {
              action: 'authz.denied',
              resource: `${resource.type}:${resource.id}`,
              outcome: 'denied',
              reason: authz.action,
              details: { policies: decision.reasons.join(',').slice(0, 512), errors: decision.errors.length },
            },
            principal,
          ),
        )
        .catch(() => {
          request.log.warn('could not audit a denied request');
        });
      throw new PermissionDeniedError(authz.action);
    },
  };
}

/**
 * The check of a self-service request (a principal managing its own second factors and API keys):
 * `identity.self` on the caller's own Identity, through the same Cedar engine, audit and context as every route,
 * so that guardrails (a session used from a new network) and custom forbids stop these requests too.
 */
export function selfServiceAuthorizer(
  engine: PolicyEngine,
  environment: string,
  audit: AuditRecorder | undefined,
): (request: FastifyRequest, principal: Principal) => Promise<void> {
  const authorizer = cedarRouteAuthorizer(engine, environment, audit);
  return (request, principal) =>
    authorizer.check(request, principal, {
      action: 'identity.self',
      resource: () => ({ type: 'Identity', id: principal.id }),
    });
}

/**
 * What a candidate policy set (the installed one with a change applied) would decide about the caller writing the
 * policy it changes: the right it needs to undo the change. The policies routes refuse a change that takes it away.
 */
export function policyChangeCheck(
  engine: PolicyEngine,
  environment: string,
): (request: FastifyRequest, principal: Principal, candidate: PolicyStore, policyId: string) => Decision {
  return (request, principal, candidate, policyId) =>
    engine.authorizeAgainst(candidate, {
      principal: kmsPrincipal(principal),
      action: 'policy.write',
      resource: { type: 'Policy', id: policyId },
      context: requestContext(principal, environment),
    });
}

import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Principal } from '../../kms/index.ts';
import {
  CUSTOM_POLICY_ID,
  PolicyStoreError,
  PolicyValidationError,
  validatePolicies,
} from '../../policy/index.ts';
import type {
  AuthzResource,
  Decision,
  PolicyChange,
  PolicyDiagnostic,
  PolicyStore,
  SqlPolicies,
} from '../../policy/index.ts';
import { principalOf } from '../context.ts';
import { errorResponses, object } from '../schemas.ts';
import type { JsonSchema } from '../schemas.ts';

/** Cedar policies (`/v1/policies/...`): built-in, guardrail and custom; custom ones validated before storing. */
export interface PolicyRouteDeps {
  readonly policies: PolicyStore;
  readonly persistence: SqlPolicies;
  /** What `candidate` would decide about the caller writing policy `policyId` (`policyChangeCheck`). */
  readonly checkChange: (
    request: FastifyRequest,
    principal: Principal,
    candidate: PolicyStore,
    policyId: string,
  ) => Decision;
}

class PolicyRouteError extends Error {
  readonly code: string;
  readonly httpStatus: number;
  constructor(code: string, httpStatus: number, message: string) {
    super(message);
    this.code = code;
    this.httpStatus = httpStatus;
  }
}

const tags = ['policies'];
const policyResource = (id: string): AuthzResource => ({ type: 'Policy', id });
const idParams = object({ id: { type: 'string', pattern: CUSTOM_POLICY_ID.source } }, ['id']);
const entryView = object(
  {
    id: { type: 'string' },
    source: { type: 'string', enum: ['built-in', 'guardrail', 'custom'] },
    text: { type: 'string' },
    policyIds: { type: 'array', items: { type: 'string' } },
  },
  ['id', 'source', 'text', 'policyIds'],
);
const diagnosticsSchema: JsonSchema = {
  type: 'array',
  items: {
    type: 'object',
    additionalProperties: true,
    properties: {
      kind: { type: 'string' },
      severity: { type: 'string' },
      message: { type: 'string' },
      line: { type: 'integer' },
      column: { type: 'integer' },
    },
  },
};

/** One line per diagnostic: where and what, for the error message of a refused upload. */
function describe(diagnostics: readonly PolicyDiagnostic[]): string {
  return diagnostics
    .filter((d) => d.severity === 'error')
    .slice(0, 5)
    .map((d) => `${d.line === undefined ? '' : `line ${d.line}: `}${d.message}`)
    .join('; ');
}

export function policyRoutes(app: FastifyInstance, deps: PolicyRouteDeps): void {
  const { policies, persistence } = deps;

  /**
   * Refuses a change after which the caller could not write this policy any more: a `forbid` on everyone, or
   * removing the permit its own access came through, would otherwise leave nobody able to undo it over the API.
   */
  const refuseLockout = (request: FastifyRequest, id: string, change: PolicyChange): void => {
    const decision = deps.checkChange(request, principalOf(request), policies.withChange(change), id);
    if (decision.decision === 'allow') return;
    const why = decision.reasons.length > 0 ? ` (denied by ${decision.reasons.join(', ')})` : '';
    throw new PolicyRouteError(
      'policy_lockout',
      409,
      `refused: after this change you would no longer be allowed policy.write on ${id}${why}, so you could not undo it`,
    );
  };

  app.get(
    '/v1/policies',
    {
      config: { action: 'policy.read', resource: () => policyResource('*') },
      schema: {
        tags,
        summary: 'Every policy in force: built-in roles, guardrails, custom policies',
        response: {
          200: object({ version: { type: 'integer' }, policies: { type: 'array', items: entryView } }),
          ...errorResponses,
        },
      },
    },
    () => ({ version: policies.version, policies: policies.list() }),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/policies/:id',
    {
      config: { action: 'policy.read', resource: (r) => policyResource((r.params as { id: string }).id) },
      schema: {
        tags,
        summary: 'One policy',
        params: idParams,
        response: { 200: entryView, ...errorResponses },
      },
    },
    (request) => {
      const entry = policies.get(request.params.id);
      if (entry === undefined) throw new PolicyRouteError('not_found', 404, 'no such policy');
      return entry;
    },
  );

  app.put<{ Params: { id: string }; Body: { text: string } }>(
    '/v1/policies/:id',
    {
      config: { action: 'policy.write', resource: (r) => policyResource((r.params as { id: string }).id) },
      schema: {
        tags,
        summary: 'Create or replace a custom policy; refused unless it validates against the Warden schema',
        params: idParams,
        body: object({ text: { type: 'string', minLength: 1, maxLength: 65536 } }, ['text']),
        response: { 200: object({ version: { type: 'integer' }, policy: entryView }), ...errorResponses },
      },
    },
    async (request) => {
      try {
        refuseLockout(request, request.params.id, {
          put: { id: request.params.id, text: request.body.text },
        });
        const version = await persistence.put(request.params.id, request.body.text, principalOf(request).id);
        return { version, policy: policies.get(request.params.id) };
      } catch (err) {
        if (err instanceof PolicyValidationError) {
          throw new PolicyRouteError(
            'invalid_policy',
            400,
            `the policy does not validate: ${describe(err.diagnostics)}`,
          );
        }
        if (err instanceof PolicyStoreError) throw new PolicyRouteError('invalid_request', 400, err.message);
        throw err;
      }
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/policies/:id',
    {
      config: { action: 'policy.write', resource: (r) => policyResource((r.params as { id: string }).id) },
      schema: {
        tags,
        summary: 'Remove a custom policy (built-in roles and guardrails cannot be removed)',
        params: idParams,
        response: { 200: object({ removed: { type: 'boolean' } }, ['removed']), ...errorResponses },
      },
    },
    async (request) => {
      try {
        if (policies.get(request.params.id) !== undefined) {
          refuseLockout(request, request.params.id, { remove: request.params.id });
        }
        return { removed: await persistence.remove(request.params.id) };
      } catch (err) {
        if (err instanceof PolicyStoreError) throw new PolicyRouteError('invalid_request', 400, err.message);
        throw err;
      }
    },
  );

  app.post<{ Body: { text: string } }>(
    '/v1/policies/validate',
    {
      config: { action: 'policy.read', resource: () => policyResource('*') },
      schema: {
        tags,
        summary: 'Validate policy text against the Warden schema without installing it',
        body: object({ text: { type: 'string', minLength: 1, maxLength: 65536 } }, ['text']),
        response: {
          200: object({ ok: { type: 'boolean' }, diagnostics: diagnosticsSchema }, ['ok', 'diagnostics']),
          ...errorResponses,
        },
      },
    },
    (request) => {
      const result = validatePolicies(request.body.text);
      return { ok: result.ok, diagnostics: result.diagnostics };
    },
  );
}

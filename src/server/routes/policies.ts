import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuditOutcome, AuditRecorder } from '../../audit/index.ts';
import type { Principal } from '../../kms/index.ts';
import {
  ACTION_IDS,
  CUSTOM_POLICY_ID,
  MAX_POLICY_TEXT_CHARS,
  PRINCIPAL_TYPES,
  PURPOSE_PATTERN,
  PolicyStoreError,
  PolicyValidationError,
  RESOURCE_TYPES,
  validatePolicies,
} from '../../policy/index.ts';
import type {
  ActionId,
  AttrValue,
  AuthzContext,
  AuthzRequest,
  AuthzResource,
  Decision,
  PolicyChange,
  PolicyDiagnostic,
  PolicyStore,
  SqlPolicies,
} from '../../policy/index.ts';
import { principalOf, requestEvent } from '../context.ts';
import { errorResponses, object } from '../schemas.ts';
import type { JsonSchema } from '../schemas.ts';

/** Cedar policies (`/v1/policies/...`): built-in, guardrail and custom; custom ones validated before storing. */
export interface PolicyRouteDeps {
  readonly policies: PolicyStore;
  readonly persistence: SqlPolicies;
  /** Every change (and every refused one) is recorded before it takes effect; no record, no change. */
  readonly audit: AuditRecorder;
  /** What `candidate` would decide about the caller writing policy `policyId` (`policyChangeCheck`). */
  readonly checkChange: (
    request: FastifyRequest,
    principal: Principal,
    candidate: PolicyStore,
    policyId: string,
  ) => Decision;
  /** The decision on `request` of the policies in force, or of `candidate` (the set with a change applied). */
  readonly decide: (request: AuthzRequest, candidate?: PolicyStore) => Decision;
  /** The deployment's environment: the `context.environment` of every real request. */
  readonly environment: string;
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

const attrsSchema: JsonSchema = {
  type: 'object',
  maxProperties: 32,
  propertyNames: { pattern: '^[A-Za-z_][A-Za-z0-9_]{0,63}$' },
  additionalProperties: {
    anyOf: [
      { type: 'string', maxLength: 1024 },
      { type: 'integer' },
      { type: 'boolean' },
      { type: 'array', maxItems: 64, items: { type: 'string', maxLength: 1024 } },
    ],
  },
};
const entityId = { type: 'string', minLength: 1, maxLength: 512 };
const simulateBody = object(
  {
    principal: object(
      {
        type: { type: 'string', enum: [...PRINCIPAL_TYPES] },
        id: entityId,
        roles: { type: 'array', maxItems: 64, items: { type: 'string', minLength: 1, maxLength: 128 } },
        groups: { type: 'array', maxItems: 64, items: { type: 'string', minLength: 1, maxLength: 128 } },
        attrs: attrsSchema,
      },
      ['type', 'id'],
    ),
    action: { type: 'string', enum: [...ACTION_IDS] },
    resource: object(
      {
        type: { type: 'string', enum: [...RESOURCE_TYPES] },
        id: entityId,
        attrs: attrsSchema,
        model: entityId,
      },
      ['type', 'id'],
    ),
    context: object({
      time: { type: 'string', format: 'date-time' },
      sourceIp: { type: 'string', anyOf: [{ format: 'ipv4' }, { format: 'ipv6' }] },
      mfaAgeSeconds: { type: 'integer', minimum: 0 },
      authMethod: { type: 'string', minLength: 1, maxLength: 64 },
      environment: { type: 'string', minLength: 1, maxLength: 64 },
      purpose: { type: 'string', pattern: PURPOSE_PATTERN.source },
      networkChanged: { type: 'boolean' },
    }),
    change: {
      oneOf: [
        object(
          {
            put: object(
              {
                id: { type: 'string', pattern: CUSTOM_POLICY_ID.source },
                text: { type: 'string', minLength: 1, maxLength: MAX_POLICY_TEXT_CHARS },
              },
              ['id', 'text'],
            ),
          },
          ['put'],
        ),
        object({ remove: { type: 'string', pattern: CUSTOM_POLICY_ID.source } }, ['remove']),
      ],
    },
  },
  ['principal', 'action', 'resource'],
);

interface SimulateBody {
  principal: {
    type: AuthzRequest['principal']['type'];
    id: string;
    roles?: string[];
    groups?: string[];
    attrs?: Record<string, AttrValue>;
  };
  action: ActionId;
  resource: {
    type: AuthzResource['type'];
    id: string;
    attrs?: Record<string, AttrValue>;
    model?: string;
  };
  context?: {
    time?: string;
    sourceIp?: string;
    mfaAgeSeconds?: number;
    authMethod?: string;
    environment?: string;
    purpose?: string;
    networkChanged?: boolean;
  };
  change?: PolicyChange;
}

/** The request context of a simulation: what was given, the deployment's environment unless overridden. */
function simulatedContext(given: SimulateBody['context'], environment: string): AuthzContext {
  const { time, ...rest } = given ?? {};
  return { environment, ...rest, ...(time === undefined ? {} : { now: new Date(time) }) };
}

/** One line per diagnostic: where and what, for the error message of a refused upload. */
function describe(diagnostics: readonly PolicyDiagnostic[]): string {
  return diagnostics
    .filter((d) => d.severity === 'error')
    .slice(0, 5)
    .map((d) => `${d.line === undefined ? '' : `line ${d.line}: `}${d.message}`)
    .join('; ');
}

/** The answer to a change the policy store refuses: text that does not validate, an entry not to be changed. */
function refusal(err: unknown): unknown {
  if (err instanceof PolicyValidationError) {
    return new PolicyRouteError(
      'invalid_policy',
      400,
      `the policy does not validate: ${describe(err.diagnostics)}`,
    );
  }
  if (err instanceof PolicyStoreError) return new PolicyRouteError('invalid_request', 400, err.message);
  return err;
}

export function policyRoutes(app: FastifyInstance, deps: PolicyRouteDeps): void {
  const { policies, persistence } = deps;

  /**
   * Records a policy change as `policy.write` on `policy:<id>`, with the operation and the SHA-256 of the text put
   * (policy text is not secret; the digest lets an auditor match the text in force). Rejects with 503
   * `audit_unavailable` when the record cannot be made.
   */
  const record = async (
    request: FastifyRequest,
    id: string,
    outcome: AuditOutcome,
    details: Record<string, string>,
    reason?: string,
  ): Promise<void> => {
    try {
      await deps.audit.record(
        requestEvent(request, {
          action: 'policy.write',
          resource: `policy:${id}`,
          outcome,
          ...(reason === undefined ? {} : { reason }),
          details,
        }),
      );
    } catch {
      throw new PolicyRouteError(
        'audit_unavailable',
        503,
        'the audit log is unavailable: no policy was changed',
      );
    }
  };

  /** Audits a change, makes it, and audits its failure if the store refuses it (the first record stands). */
  const change = async <T>(
    request: FastifyRequest,
    id: string,
    details: Record<string, string>,
    apply: () => Promise<T>,
  ): Promise<T> => {
    await record(request, id, 'success', details);
    try {
      return await apply();
    } catch (err) {
      await record(request, id, 'failure', details, 'store_failed').catch(() => undefined);
      throw err;
    }
  };

  /**
   * Refuses a change after which the caller could not write this policy any more: a `forbid` on everyone, or
   * removing the permit its own access came through, would otherwise leave nobody able to undo it over the API.
   */
  const refuseLockout = async (
    request: FastifyRequest,
    id: string,
    proposed: PolicyChange,
    details: Record<string, string>,
  ): Promise<void> => {
    const decision = deps.checkChange(request, principalOf(request), policies.withChange(proposed), id);
    if (decision.decision === 'allow') return;
    // The attempt is evidence too; a refusal stands whether or not it could be recorded.
    await record(request, id, 'denied', details, 'policy_lockout').catch(() => undefined);
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
        body: object({ text: { type: 'string', minLength: 1, maxLength: MAX_POLICY_TEXT_CHARS } }, ['text']),
        response: { 200: object({ version: { type: 'integer' }, policy: entryView }), ...errorResponses },
      },
    },
    async (request) => {
      const { id } = request.params;
      const { text } = request.body;
      const details = { operation: 'put', sha256: createHash('sha256').update(text, 'utf8').digest('hex') };
      try {
        await refuseLockout(request, id, { put: { id, text } }, details);
        const version = await change(request, id, details, () =>
          persistence.put(id, text, principalOf(request).id),
        );
        return { version, policy: policies.get(id) };
      } catch (err) {
        throw refusal(err);
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
      const { id } = request.params;
      const details = { operation: 'delete' };
      try {
        // Nothing to change, nothing to record: the answer says so (`removed: false`).
        if (policies.get(id) === undefined) return { removed: await persistence.remove(id) };
        await refuseLockout(request, id, { remove: id }, details);
        return { removed: await change(request, id, details, () => persistence.remove(id)) };
      } catch (err) {
        if (err instanceof PolicyStoreError) throw new PolicyRouteError('invalid_request', 400, err.message);
        throw err;
      }
    },
  );

  app.post<{ Body: SimulateBody }>(
    '/v1/policies/simulate',
    {
      config: { action: 'policy.read', resource: () => policyResource('*') },
      schema: {
        tags,
        summary:
          'What the policies in force (or with one custom policy put or removed) decide about a request; changes nothing',
        body: simulateBody,
        response: {
          200: object(
            {
              decision: { type: 'string', enum: ['allow', 'deny'] },
              reasons: { type: 'array', items: { type: 'string' } },
              errors: { type: 'array', items: { type: 'string' } },
              version: { type: 'integer' },
              changed: { type: 'boolean' },
            },
            ['decision', 'reasons', 'errors', 'version', 'changed'],
          ),
          ...errorResponses,
        },
      },
    },
    (request) => {
      const { principal, action, resource, context, change } = request.body;
      let candidate: PolicyStore | undefined;
      if (change !== undefined) {
        if ('remove' in change && policies.get(change.remove)?.source !== 'custom') {
          throw new PolicyRouteError('not_found', 404, `no custom policy ${change.remove}`);
        }
        try {
          candidate = policies.withChange(change);
        } catch (err) {
          throw refusal(err);
        }
      }
      const decision = deps.decide(
        { principal, action, resource, context: simulatedContext(context, deps.environment) },
        candidate,
      );
      return {
        decision: decision.decision,
        reasons: decision.reasons,
        errors: decision.errors,
        version: decision.version,
        changed: candidate !== undefined,
      };
    },
  );

  app.post<{ Body: { text: string } }>(
    '/v1/policies/validate',
    {
      config: { action: 'policy.read', resource: () => policyResource('*') },
      schema: {
        tags,
        summary: 'Validate policy text against the Warden schema without installing it',
        body: object({ text: { type: 'string', minLength: 1, maxLength: MAX_POLICY_TEXT_CHARS } }, ['text']),
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

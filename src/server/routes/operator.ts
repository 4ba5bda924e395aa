import type { FastifyRequest } from 'fastify';
import type { AuditOutcome, AuditRecorder } from '../../audit/index.ts';
import { InvalidRequestError } from '../../kms/index.ts';
import type { AuthzResource } from '../../policy/index.ts';
import { principalOf, requestEvent } from '../context.ts';
import type { RouteModule } from '../context.ts';
import { errorResponses, object, rootStatusView } from '../schemas.ts';

/**
 * Root-of-trust operations, like Vault's `sys/seal-status`, `sys/init`, `sys/unseal` and `sys/seal`. Status and
 * unseal need no token (while sealed nothing could verify one, and the shares are the credential); init and
 * seal need an authenticated operator.
 */
const statusResponse = { 200: { $ref: 'RootStatus#' }, ...errorResponses };

/** The deployment's root of trust, as the resource of operator actions. */
const SYSTEM = (): AuthzResource => ({ type: 'System', id: 'warden' });

/**
 * Records an operator action on `system:warden`. Best effort, unlike every other record: refusing to seal, or
 * withholding the shares of an init that has happened, because the audit log cannot write would be worse than a
 * missing record; the failure is logged instead. Unseal is public: its principal is the share's bearer.
 */
async function recordOperator(
  audit: AuditRecorder | undefined,
  request: FastifyRequest,
  action: 'operator.init' | 'operator.unseal' | 'operator.seal',
  outcome: AuditOutcome,
  details: Record<string, string | number | boolean>,
  reason?: string,
): Promise<void> {
  if (audit === undefined) return;
  const principal =
    action === 'operator.unseal' ? { id: 'anonymous', authMethod: 'unseal-share' } : principalOf(request);
  try {
    await audit.record(
      requestEvent(
        request,
        { action, resource: 'system:warden', outcome, ...(reason === undefined ? {} : { reason }), details },
        principal,
      ),
    );
  } catch {
    request.log.warn({ action }, 'could not audit an operator action');
  }
}

export const operatorRoutes: RouteModule = (app, { operator, kms, audit }) => {
  app.get(
    '/v1/operator/status',
    {
      config: { public: true },
      schema: {
        tags: ['operator'],
        summary: 'Root of trust status: initialised, sealed, unseal progress (no token needed)',
        security: [],
        response: statusResponse,
      },
    },
    () => rootStatusView(operator.status()),
  );

  app.post<{ Body: { shares: number; threshold: number } }>(
    '/v1/operator/init',
    {
      config: { action: 'operator.init', resource: SYSTEM },
      schema: {
        tags: ['operator'],
        summary: 'Initialise the root of trust; returns the unseal shares, shown once',
        body: object(
          {
            shares: { type: 'integer', minimum: 1, maximum: 255, description: 'shares to issue' },
            threshold: { type: 'integer', minimum: 1, maximum: 255, description: 'shares needed to unseal' },
          },
          ['shares', 'threshold'],
        ),
        response: {
          200: object({ shares: { type: 'array', items: { type: 'string' } } }, ['shares']),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const { shares, threshold } = request.body;
      if (threshold > shares) throw new InvalidRequestError('threshold must not exceed shares');
      const result = await operator.init({ shares, threshold });
      kms.forgetKeys();
      await recordOperator(audit, request, 'operator.init', 'success', { shares, threshold });
      return result;
    },
  );

  app.post<{ Body: { share: string } }>(
    '/v1/operator/unseal',
    {
      config: { public: true },
      schema: {
        tags: ['operator'],
        summary: 'Give one unseal share (no token needed: the shares are the credential)',
        security: [],
        body: object({ share: { type: 'string', minLength: 1, maxLength: 4096 } }, ['share']),
        response: statusResponse,
      },
    },
    async (request) => {
      let status;
      try {
        status = await operator.unseal(request.body.share);
      } catch (err) {
        // A refused share is evidence (someone holds a wrong or forged one); the share itself is never recorded.
        const code = (err as { code?: unknown }).code;
        await recordOperator(
          audit,
          request,
          'operator.unseal',
          'failure',
          {},
          typeof code === 'string' ? code : 'error',
        );
        throw err;
      }
      await recordOperator(audit, request, 'operator.unseal', 'success', {
        sealed: status.sealed,
        ...(status.progress === undefined ? {} : { progress: status.progress }),
      });
      return rootStatusView(status);
    },
  );

  app.post(
    '/v1/operator/seal',
    {
      config: { action: 'operator.seal', resource: SYSTEM },
      schema: {
        tags: ['operator'],
        summary: 'Seal: wipe the root key and every unwrapped key from memory',
        response: statusResponse,
      },
    },
    async (request) => {
      const status = await operator.seal();
      kms.forgetKeys();
      await recordOperator(audit, request, 'operator.seal', 'success', {});
      return rootStatusView(status);
    },
  );
};

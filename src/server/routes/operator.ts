import { InvalidRequestError } from '../../kms/index.ts';
import type { AuthzResource } from '../../policy/index.ts';
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

export const operatorRoutes: RouteModule = (app, { operator, kms }) => {
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
    async (request) => rootStatusView(await operator.unseal(request.body.share)),
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
    async () => {
      const status = await operator.seal();
      kms.forgetKeys();
      return rootStatusView(status);
    },
  );
};

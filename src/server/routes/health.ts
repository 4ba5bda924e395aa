import type { RouteModule } from '../context.ts';
import { errorResponses, object } from '../schemas.ts';

/**
 * `GET /v1/health`, for load balancers and probes: 200 when the KMS can serve (initialised and unsealed), 503
 * otherwise, with the same body either way. No token needed, and nothing sensitive in it.
 */
const healthBody = object(
  {
    status: { type: 'string', enum: ['ok', 'sealed', 'uninitialized'] },
    initialized: { type: 'boolean' },
    sealed: { type: 'boolean' },
  },
  ['status', 'initialized', 'sealed'],
);

export const healthRoutes: RouteModule = (app, { operator }) => {
  app.get(
    '/v1/health',
    {
      config: { public: true },
      schema: {
        tags: ['system'],
        summary: 'Health: 200 when serving, 503 when sealed or not initialised',
        security: [],
        response: { 200: healthBody, 503: healthBody, ...errorResponses },
      },
    },
    (_request, reply) => {
      const { initialized, sealed } = operator.status();
      const status = !initialized ? 'uninitialized' : sealed ? 'sealed' : 'ok';
      return reply.code(status === 'ok' ? 200 : 503).send({ status, initialized, sealed });
    },
  );

  app.get(
    '/v1/openapi.json',
    {
      config: { public: true },
      schema: {
        tags: ['system'],
        summary: 'This API as an OpenAPI 3.1 document, generated from the route schemas',
        security: [],
        response: {
          200: { type: 'object', additionalProperties: true },
          ...errorResponses,
        },
      },
    },
    () => app.swagger(),
  );
};

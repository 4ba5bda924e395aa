import { MAX_RANDOM_REQUEST_BYTES } from '../../kms/index.ts';
import { kmsRoute, principalOf, toBase64 } from '../context.ts';
import type { RouteModule } from '../context.ts';
import { base64Out, errorResponses, object } from '../schemas.ts';

/** `POST /v1/kms/random`: random bytes from the root of trust's entropy source (the HSM's, with PKCS#11). */
export const randomRoutes: RouteModule = (app, { kms }) => {
  app.post<{ Body: { bytes: number } }>(
    '/v1/kms/random',
    {
      config: kmsRoute('crypto.random'),
      schema: {
        tags: ['crypto'],
        summary: "Random bytes from the root of trust's generator",
        body: object({ bytes: { type: 'integer', minimum: 1, maximum: MAX_RANDOM_REQUEST_BYTES } }, [
          'bytes',
        ]),
        response: {
          200: object({ random: base64Out('the random bytes') }, ['random']),
          ...errorResponses,
        },
      },
    },
    async (request) => ({
      random: toBase64(await kms.randomBytes(principalOf(request), request.body.bytes)),
    }),
  );
};

import { fromBase64, kmsRoute, optionalBytes, principalOf, wireItems } from '../context.ts';
import type { RouteModule } from '../context.ts';
import { ciphertextOut, errorResponses, singleOrBatch, singleOrBatchResponse } from '../schemas.ts';
import { ciphertextItemSchema } from './decrypt.ts';
import type { CiphertextItem } from './decrypt.ts';

/** `POST /v1/kms/rewrap`: re-encrypt under the key's latest version; the plaintext never leaves the KMS. */
export const rewrapRoutes: RouteModule = (app, { kms, batchBodyLimit }) => {
  app.post<{ Body: CiphertextItem | { items: CiphertextItem[] } }>(
    '/v1/kms/rewrap',
    {
      config: kmsRoute('crypto.rewrap'),
      bodyLimit: batchBodyLimit,
      schema: {
        tags: ['crypto'],
        summary: "Re-encrypt a ciphertext under its key's latest version, keeping the context",
        body: singleOrBatch(ciphertextItemSchema),
        response: {
          200: singleOrBatchResponse({ ciphertext: ciphertextOut }, ['ciphertext']),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const body = request.body;
      if ('items' in body) {
        const results = await kms.rewrapBatch(
          principal,
          body.items.map((item) => ({
            ciphertext: item.ciphertext,
            ...(item.context === undefined ? {} : { context: fromBase64(item.context) }),
          })),
        );
        return { items: wireItems(results, (ciphertext) => ({ ciphertext })) };
      }
      return { ciphertext: await kms.rewrap(principal, body.ciphertext, optionalBytes(body.context)) };
    },
  );
};

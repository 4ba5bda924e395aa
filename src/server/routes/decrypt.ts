import { fromBase64, kmsRoute, optionalBytes, principalOf, toBase64, wireItems } from '../context.ts';
import type { RouteModule } from '../context.ts';
import {
  base64Out,
  ciphertextSchema,
  contextSchema,
  errorResponses,
  object,
  singleOrBatch,
  singleOrBatchResponse,
} from '../schemas.ts';

/** `POST /v1/kms/decrypt`: the key and version come from the ciphertext itself. */

export interface CiphertextItem {
  ciphertext: string;
  context?: string;
}

export const ciphertextItemSchema = object({ ciphertext: ciphertextSchema, context: contextSchema }, [
  'ciphertext',
]);

export const decryptRoutes: RouteModule = (app, { kms, batchBodyLimit }) => {
  app.post<{ Body: CiphertextItem | { items: CiphertextItem[] } }>(
    '/v1/kms/decrypt',
    {
      config: kmsRoute('crypto.decrypt'),
      bodyLimit: batchBodyLimit,
      schema: {
        tags: ['crypto'],
        summary: 'Decrypt a KMS ciphertext (every failure is the one `decryption_failed`)',
        body: singleOrBatch(ciphertextItemSchema),
        response: {
          200: singleOrBatchResponse({ plaintext: base64Out('the plaintext') }, ['plaintext']),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const body = request.body;
      if ('items' in body) {
        const results = await kms.decryptBatch(
          principal,
          body.items.map((item) => ({
            ciphertext: item.ciphertext,
            ...(item.context === undefined ? {} : { context: fromBase64(item.context) }),
          })),
        );
        return { items: wireItems(results, (plaintext) => ({ plaintext: toBase64(plaintext) })) };
      }
      const plaintext = await kms.decrypt(principal, body.ciphertext, optionalBytes(body.context));
      return { plaintext: toBase64(plaintext) };
    },
  );
};

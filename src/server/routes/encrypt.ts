import { fromBase64, kmsRoute, optionalBytes, principalOf, wireItems } from '../context.ts';
import type { RouteContext, RouteModule } from '../context.ts';
import {
  ciphertextOut,
  contextSchema,
  errorResponses,
  nameParams,
  object,
  plaintextSchema,
  singleOrBatch,
  singleOrBatchResponse,
} from '../schemas.ts';

/** `POST /v1/kms/encrypt/:name`: one plaintext, or a batch of up to 1000. */

export interface EncryptItem {
  plaintext: string;
  context?: string;
}

export const encryptRoutes: RouteModule = (app, { kms, batchBodyLimit }: RouteContext) => {
  app.post<{ Params: { name: string }; Body: EncryptItem | { items: EncryptItem[] } }>(
    '/v1/kms/encrypt/:name',
    {
      config: kmsRoute('crypto.encrypt'),
      bodyLimit: batchBodyLimit,
      schema: {
        tags: ['crypto'],
        summary: "Encrypt under the key's latest version (AES-256-GCM)",
        params: nameParams,
        body: singleOrBatch(object({ plaintext: plaintextSchema, context: contextSchema }, ['plaintext'])),
        response: {
          200: singleOrBatchResponse({ ciphertext: ciphertextOut }, ['ciphertext']),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const { name } = request.params;
      const body = request.body;
      if ('items' in body) {
        const results = await kms.encryptBatch(
          principal,
          name,
          body.items.map((item) => ({
            plaintext: fromBase64(item.plaintext),
            ...(item.context === undefined ? {} : { context: fromBase64(item.context) }),
          })),
        );
        return { items: wireItems(results, (ciphertext) => ({ ciphertext })) };
      }
      return {
        ciphertext: await kms.encrypt(
          principal,
          name,
          fromBase64(body.plaintext),
          optionalBytes(body.context),
        ),
      };
    },
  );
};

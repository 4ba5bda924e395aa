import { fromBase64, kmsRoute, optionalBytes, principalOf, toBase64, wireItems } from '../context.ts';
import type { RouteModule } from '../context.ts';
import {
  base64Out,
  ciphertextOut,
  contextSchema,
  errorResponses,
  nameParams,
  object,
  singleOrBatch,
  singleOrBatchResponse,
} from '../schemas.ts';
import { ciphertextItemSchema } from './decrypt.ts';
import type { CiphertextItem } from './decrypt.ts';

/** Data keys for envelope encryption: `POST /v1/kms/datakey/:name` and `POST /v1/kms/decrypt-datakey`. */

const includePlaintext = {
  type: 'boolean',
  description: 'return the data key in clear as well as wrapped (default true)',
};
const dataKeySchema = base64Out('the 256-bit data key');

export const dataKeyRoutes: RouteModule = (app, { kms, batchBodyLimit }) => {
  app.post<{
    Params: { name: string };
    Body: { context?: string; plaintext?: boolean } | { items: { context?: string }[]; plaintext?: boolean };
  }>(
    '/v1/kms/datakey/:name',
    {
      config: kmsRoute('crypto.generate-data-key'),
      bodyLimit: batchBodyLimit,
      schema: {
        tags: ['crypto'],
        summary: "Generate a 256-bit data key, wrapped under the key's latest version",
        params: nameParams,
        body: singleOrBatch(
          object({ context: contextSchema }),
          { plaintext: includePlaintext },
          object({ context: contextSchema, plaintext: includePlaintext }),
        ),
        response: {
          200: singleOrBatchResponse(
            { ciphertext: ciphertextOut, plaintext: dataKeySchema, keyVersion: { type: 'integer' } },
            ['ciphertext', 'keyVersion'],
          ),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const { name } = request.params;
      const body = request.body;
      const options = { includePlaintext: body.plaintext ?? true };
      const view = (key: { ciphertext: string; plaintext?: Buffer; keyVersion: number }) => {
        const wire = {
          ciphertext: key.ciphertext,
          keyVersion: key.keyVersion,
          ...(key.plaintext === undefined ? {} : { plaintext: toBase64(key.plaintext) }),
        };
        key.plaintext?.fill(0);
        return wire;
      };
      if ('items' in body) {
        const results = await kms.generateDataKeyBatch(
          principal,
          name,
          body.items.map((item) => (item.context === undefined ? {} : { context: fromBase64(item.context) })),
          options,
        );
        return { items: wireItems(results, view) };
      }
      return view(await kms.generateDataKey(principal, name, optionalBytes(body.context), options));
    },
  );

  app.post<{ Body: CiphertextItem | { items: CiphertextItem[] } }>(
    '/v1/kms/decrypt-datakey',
    {
      config: kmsRoute('crypto.decrypt-data-key'),
      bodyLimit: batchBodyLimit,
      schema: {
        tags: ['crypto'],
        summary: 'Unwrap a data key (refused for ciphertexts that are not 256-bit data keys)',
        body: singleOrBatch(ciphertextItemSchema),
        response: {
          200: singleOrBatchResponse({ plaintext: dataKeySchema }, ['plaintext']),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const body = request.body;
      const view = (key: Buffer) => {
        const wire = { plaintext: toBase64(key) };
        key.fill(0);
        return wire;
      };
      if ('items' in body) {
        const results = await kms.decryptDataKeyBatch(
          principal,
          body.items.map((item) => ({
            ciphertext: item.ciphertext,
            ...(item.context === undefined ? {} : { context: fromBase64(item.context) }),
          })),
        );
        return { items: wireItems(results, view) };
      }
      return view(await kms.decryptDataKey(principal, body.ciphertext, optionalBytes(body.context)));
    },
  );
};

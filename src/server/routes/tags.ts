import type { BatchResult, KmsAction, KmsService, Principal } from '../../kms/index.ts';
import { fromBase64, kmsRoute, principalOf, toBase64, wireItems } from '../context.ts';
import type { RouteModule } from '../context.ts';
import {
  errorResponses,
  nameParams,
  object,
  singleOrBatch,
  singleOrBatchResponse,
  versionNumberSchema,
} from '../schemas.ts';
import type { JsonSchema } from '../schemas.ts';

/**
 * Signatures and MACs have the same API shape — produce a tag over an input with the latest version, verify one
 * with any enabled version — so both route pairs come from this one definition.
 */
export interface TagRouteSpec {
  readonly producePath: string;
  readonly verifyPath: string;
  readonly produceSummary: string;
  readonly produceAction: KmsAction;
  readonly verifyAction: KmsAction;
  readonly verifySummary: string;
  /** JSON field names: the input (`message`, `data`) and the tag (`signature`, `mac`). */
  readonly inputField: string;
  readonly tagField: string;
  readonly inputSchema: JsonSchema;
  readonly tagSchema: JsonSchema;
  readonly tagOutSchema: JsonSchema;
  produce(
    kms: KmsService,
    principal: Principal,
    name: string,
    input: Buffer,
  ): Promise<{ tag: Buffer; keyVersion: number }>;
  produceBatch(
    kms: KmsService,
    principal: Principal,
    name: string,
    inputs: Buffer[],
  ): Promise<BatchResult<{ tag: Buffer; keyVersion: number }>[]>;
  verify(
    kms: KmsService,
    principal: Principal,
    name: string,
    input: Buffer,
    tag: Buffer,
    version?: number,
  ): Promise<boolean>;
  verifyBatch(
    kms: KmsService,
    principal: Principal,
    name: string,
    items: { input: Buffer; tag: Buffer; version?: number }[],
  ): Promise<BatchResult<boolean>[]>;
}

type Fields = Record<string, string | number | undefined>;

export function tagRoutes(spec: TagRouteSpec): RouteModule {
  const { inputField, tagField } = spec;
  const field = (item: Fields, key: string) => fromBase64(String(item[key]));
  return (app, { kms, batchBodyLimit }) => {
    app.post<{ Params: { name: string }; Body: Fields | { items: Fields[] } }>(
      spec.producePath,
      {
        config: kmsRoute(spec.produceAction),
        bodyLimit: batchBodyLimit,
        schema: {
          tags: ['crypto'],
          summary: spec.produceSummary,
          params: nameParams,
          body: singleOrBatch(object({ [inputField]: spec.inputSchema }, [inputField])),
          response: {
            200: singleOrBatchResponse({ [tagField]: spec.tagOutSchema, keyVersion: { type: 'integer' } }, [
              tagField,
              'keyVersion',
            ]),
            ...errorResponses,
          },
        },
      },
      async (request) => {
        const principal = principalOf(request);
        const { name } = request.params;
        const body = request.body;
        const view = (r: { tag: Buffer; keyVersion: number }) => ({
          [tagField]: toBase64(r.tag),
          keyVersion: r.keyVersion,
        });
        if ('items' in body && Array.isArray(body.items)) {
          const inputs = body.items.map((item) => field(item, inputField));
          return { items: wireItems(await spec.produceBatch(kms, principal, name, inputs), view) };
        }
        return view(await spec.produce(kms, principal, name, field(body as Fields, inputField)));
      },
    );

    app.post<{ Params: { name: string }; Body: Fields | { items: Fields[] } }>(
      spec.verifyPath,
      {
        config: kmsRoute(spec.verifyAction),
        bodyLimit: batchBodyLimit,
        schema: {
          tags: ['crypto'],
          summary: spec.verifySummary,
          params: nameParams,
          body: singleOrBatch(
            object(
              { [inputField]: spec.inputSchema, [tagField]: spec.tagSchema, version: versionNumberSchema },
              [inputField, tagField],
            ),
          ),
          response: {
            200: singleOrBatchResponse({ valid: { type: 'boolean' } }, ['valid']),
            ...errorResponses,
          },
        },
      },
      async (request) => {
        const principal = principalOf(request);
        const { name } = request.params;
        const body = request.body;
        if ('items' in body && Array.isArray(body.items)) {
          const items = body.items.map((item) => ({
            input: field(item, inputField),
            tag: field(item, tagField),
            ...(item.version === undefined ? {} : { version: item.version as number }),
          }));
          const results = await spec.verifyBatch(kms, principal, name, items);
          return { items: wireItems(results, (valid) => ({ valid })) };
        }
        const single = body as Fields;
        const version = single.version as number | undefined;
        return {
          valid: await spec.verify(
            kms,
            principal,
            name,
            field(single, inputField),
            field(single, tagField),
            version,
          ),
        };
      },
    );
  };
}

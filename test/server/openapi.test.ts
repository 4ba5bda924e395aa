import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import { OPERATION_IDS } from '../../src/server/openapi.ts';
import { tempDir } from '../envelope/support.ts';

interface Operation {
  operationId?: string;
  summary?: string;
  tags?: string[];
}
interface Document {
  info: { title: string; description: string };
  tags: { name: string; description?: string }[];
  paths: Record<string, Record<string, Operation>>;
}

describe('the OpenAPI document of warden server', async () => {
  const warden = await startWarden(
    loadConfig({ WARDEN_DATA_DIR: tempDir('warden-openapi-'), WARDEN_LISTEN: '127.0.0.1:0' }),
    { requestLog: { write: () => true } as unknown as NodeJS.WritableStream },
  );
  const dispatcher = new Agent({ connect: { ca: readFileSync(warden.caPath) } });
  after(async () => {
    await dispatcher.close();
    await warden.close();
  });
  const response = await request(`${warden.url}/v1/openapi.json`, { dispatcher });
  const doc = (await response.body.json()) as Document;
  const operations = Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, operation]) => ({
      key: `${method.toUpperCase()} ${path}`,
      operation,
    })),
  );

  it('is served without a token and describes the whole API', () => {
    assert.equal(response.statusCode, 200);
    assert.equal(doc.info.title, 'Warden API');
    for (const area of ['KMS', 'audit', 'registry', 'gateway', 'Cedar'])
      assert.match(doc.info.description, new RegExp(area));
    assert.ok(operations.length > 100, `${operations.length} operations`);
  });

  it('gives every operation a unique operationId, so that generated clients have method names', () => {
    const seen = new Map<string, string>();
    for (const { key, operation } of operations) {
      const id = operation.operationId;
      assert.ok(
        id !== undefined,
        `${key} has no operationId: add it to OPERATION_IDS in src/server/openapi.ts`,
      );
      assert.match(id, /^[a-z][A-Za-z0-9]*$/, key);
      assert.equal(seen.get(id), undefined, `${key} and ${seen.get(id)} share the operationId ${id}`);
      seen.set(id, key);
    }
    // No stale names: each one belongs to a route (the OIDC login routes exist only with an identity provider set).
    const documented = new Set(operations.map((o) => o.key));
    for (const key of Object.keys(OPERATION_IDS)) {
      if (!key.includes('/v1/auth/oidc/')) assert.ok(documented.has(key), `${key} is named but not a route`);
    }
  });

  it('gives every operation a summary and declares, with a description, every tag its operations use', () => {
    const declared = new Map(doc.tags.map((t) => [t.name, t.description ?? '']));
    for (const { key, operation } of operations) {
      assert.ok((operation.tags ?? []).length > 0, `${key} has no tag`);
      assert.ok((operation.summary ?? '').length > 0, `${key} has no summary`);
      for (const tag of operation.tags ?? [])
        assert.ok(declared.get(tag), `${key}: tag ${tag} is not declared`);
    }
  });
});

// Custom Cedar policies persisted in the store: validated before storing, installed on every node that shares the
// database (on SQLite and PostgreSQL), removed everywhere, and never half-applied.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import {
  FILE_POLICY_PREFIX,
  PolicyEngine,
  PolicyPersistenceError,
  PolicyStore,
  PolicyValidationError,
  SqlPolicies,
} from '../../src/policy/index.ts';
import type { AuthzRequest, PoliciesDB } from '../../src/policy/index.ts';
import { openStore } from '../../src/store/index.ts';
import type { StoreConfig } from '../../src/store/index.ts';
import { tempDir } from '../envelope/support.ts';
import { startPostgres } from '../support/postgres.ts';

const READ_DATASET: AuthzRequest = {
  principal: { type: 'User', id: 'ana', roles: ['analyst'] },
  action: 'dataset.read',
  resource: { type: 'Dataset', id: 'claims', attrs: { sensitivity: 'internal' } },
};
const ANALYSTS_READ = `permit (principal in Warden::Role::"analyst", action == Warden::Action::"dataset.read", resource)
when { resource.sensitivity == "internal" };`;

async function twoNodes(config: StoreConfig) {
  const storeA = await openStore<PoliciesDB>(config);
  const storeB = config.kind === 'sqlite' ? storeA : await openStore<PoliciesDB>(config);
  const policiesA = new PolicyStore();
  const policiesB = new PolicyStore();
  const a = await SqlPolicies.open(storeA, policiesA, { pollMs: 60_000 });
  const b = await SqlPolicies.open(storeB, policiesB, { pollMs: 60_000 });
  return {
    a,
    b,
    engineA: new PolicyEngine({ store: policiesA, cache: { maxEntries: 0 } }),
    engineB: new PolicyEngine({ store: policiesB, cache: { maxEntries: 0 } }),
    async close() {
      a.close();
      b.close();
      await storeA.close();
      if (storeB !== storeA) await storeB.close();
    },
  };
}

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`custom policies in the store (${dialect})`, async () => {
    let config: StoreConfig;
    if (dialect === 'sqlite') {
      config = { kind: 'sqlite', path: path.join(tempDir('warden-policies-'), 'p.db') };
    } else {
      const pg = await startPostgres();
      after(() => pg.stop());
      config = { kind: 'postgres', url: pg.url };
    }

    it('stores a validated policy and installs it on every node; removal reaches every node', async () => {
      const nodes = await twoNodes(config);
      try {
        assert.equal(nodes.engineA.authorize(READ_DATASET).decision, 'deny');
        await nodes.a.put('analysts-read', ANALYSTS_READ, 'admin');
        assert.equal(nodes.engineA.authorize(READ_DATASET).decision, 'allow');
        assert.equal(nodes.engineB.authorize(READ_DATASET).decision, 'deny', 'B has not synced yet');
        await nodes.b.sync();
        assert.equal(nodes.engineB.authorize(READ_DATASET).decision, 'allow');

        assert.equal(await nodes.b.remove('analysts-read'), true);
        await nodes.a.sync();
        assert.equal(nodes.engineA.authorize(READ_DATASET).decision, 'deny');
        assert.equal(nodes.engineB.authorize(READ_DATASET).decision, 'deny');
      } finally {
        await nodes.close();
      }
    });

    it('refuses text that does not validate, and stores nothing', async () => {
      const nodes = await twoNodes(config);
      try {
        await assert.rejects(
          nodes.a.put(
            'broken',
            'permit (principal, action == Warden::Action::"no.such", resource);',
            'admin',
          ),
          PolicyValidationError,
        );
        await assert.rejects(
          nodes.a.put('syntax', 'permit (principal, action, resource', 'admin'),
          PolicyValidationError,
        );
        await nodes.b.sync();
        assert.equal(nodes.engineB.authorize(READ_DATASET).decision, 'deny');
        await assert.rejects(
          nodes.a.put(`${FILE_POLICY_PREFIX}x`, ANALYSTS_READ, 'admin'),
          PolicyPersistenceError,
        );
      } finally {
        await nodes.close();
      }
    });

    it('installs nothing and removes nothing on this node when the store cannot be written', async () => {
      const store = await openStore<PoliciesDB>(config);
      const policies = new PolicyStore();
      const sql = await SqlPolicies.open(store, policies, { pollMs: 60_000 });
      await sql.put('kept', ANALYSTS_READ, 'admin');
      sql.close();
      await store.close();
      await assert.rejects(sql.put('analysts-read-2', ANALYSTS_READ, 'admin'));
      assert.equal(
        policies.get('analysts-read-2'),
        undefined,
        'not enforced here while no other node knows it',
      );
      await assert.rejects(sql.remove('kept'));
      assert.ok(policies.get('kept'), 'still enforced, as it still is everywhere else');
      const reopened = await openStore<PoliciesDB>(config);
      const cleanup = await SqlPolicies.open(reopened, new PolicyStore(), { pollMs: 60_000 });
      await cleanup.remove('kept');
      cleanup.close();
      await reopened.close();
    });

    it('survives a restart: a new node loads every stored policy', async () => {
      const first = await twoNodes(config);
      await first.a.put('analysts-read', ANALYSTS_READ, 'admin');
      await first.close();
      const second = await twoNodes(config);
      try {
        assert.equal(second.engineA.authorize(READ_DATASET).decision, 'allow');
        await second.a.remove('analysts-read');
      } finally {
        await second.close();
      }
    });
  });
}

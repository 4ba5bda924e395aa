import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as identity from '../../src/identity/index.ts';

describe('src/identity public API', () => {
  it('exports the credential primitives', () => {
    for (const name of [
      'hashPassword',
      'verifyPassword',
      'needsRehash',
      'parsePasswordHash',
      'PASSWORD_HASH_PARAMS',
      'generateTotpSecret',
      'verifyTotp',
      'totpProvisioningUri',
      'generateRecoveryCodes',
      'verifyRecoveryCode',
      'createApiKey',
      'parseApiKey',
      'verifyApiKey',
      'touch',
      'AuthThrottle',
    ]) {
      assert.ok(name in identity, name);
    }
  });
});

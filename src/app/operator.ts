import { InvalidRequestError, KmsError } from '../kms/index.ts';
import type { KmsService, RootStatus } from '../kms/index.ts';
import type { Pkcs11RootOfTrust } from '../kms/index.ts';
import { SoftwareRootError } from '../kms/index.ts';
import type { SoftwareRootOfTrust } from '../kms/index.ts';
import type { OperatorControl } from '../server/index.ts';

/** Software root errors are caller errors (bad share, already initialised): 400/409, never a generic 500. */
function operatorError(err: unknown): never {
  if (err instanceof SoftwareRootError) {
    throw new KmsError(err.code, err.code === 'already_initialized' ? 409 : 400, err.message);
  }
  throw err;
}

/** Shamir-sealed software root: init prints shares once, unseal takes them one at a time. */
export function softwareOperator(root: SoftwareRootOfTrust, kms: KmsService): OperatorControl {
  return {
    status: () => root.status(),
    async init({ shares, threshold }) {
      try {
        return { shares: await root.init({ shares, threshold }) };
      } catch (err) {
        operatorError(err);
      }
    },
    unseal(share): Promise<RootStatus> {
      try {
        root.unseal(share);
        return Promise.resolve(root.status());
      } catch (err) {
        operatorError(err);
      }
    },
    async seal() {
      await root.seal();
      kms.forgetKeys();
      return root.status();
    },
  };
}

/** PKCS#11 root: the "share" is the user PIN; init generates the root key inside the HSM. */
export function pkcs11Operator(root: Pkcs11RootOfTrust, kms: KmsService): OperatorControl {
  return {
    status: () => root.status(),
    async init({ shares }) {
      if (shares !== 1)
        throw new InvalidRequestError('an HSM root has no shares: initialise with shares=1, threshold=1');
      await root.initialize();
      return { shares: [] };
    },
    async unseal(pin) {
      await root.unseal(pin);
      return root.status();
    },
    async seal() {
      await root.seal();
      kms.forgetKeys();
      return root.status();
    },
  };
}

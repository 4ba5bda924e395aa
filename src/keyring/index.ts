export { LocalKeyring, KeyringError, KEYRING_FORMAT, defaultKeyringPath } from './local-keyring.ts';

/**
 * What the Store contract suites share: the adapter's hooks (MakeStore, StoreContractOptions),
 * a fresh-store wrapper, and builders for products and devices. Nothing here knows an adapter.
 */
import assert from 'node:assert/strict';
import { ThingAuthError, type ErrorKind } from '../../src/core/errors.js';
import type { Product } from '../../src/core/records.js';
import { generateMasterKey, KeyringCipher, type SecretCipher } from '../../src/core/secret-cipher.js';
import type { NewDevice, Store } from '../../src/store/store.js';

/**
 * Builds a fresh, migrated, empty store that encrypts with `cipher`. Suites pass the cipher so
 * the key-rotation cases can swap keys under a live store (RotatingCipher.use).
 */
export type MakeStore = (cipher: SecretCipher) => Promise<Store>;

export interface StoreContractOptions {
  /** Everything the adapter persisted for this store, as text (raw rows, file bytes). */
  rawContents?: (store: Store) => Promise<string>;
  /**
   * Overwrites the device count the adapter keeps for `productKey` (for limits) with `devices`,
   * behind the Store's back, so the suite can show productCountMismatches notices. Without it
   * that one case is reported as skipped.
   */
  overwriteDeviceCount?: (store: Store, productKey: string, devices: number) => Promise<void>;
  /**
   * Copies the stored (encrypted) form of the secret at `from` over the one at `to`, behind the
   * Store's back, as someone with write access to the database but not the key would. The
   * secrets-bound-to-their-place cases use it; without it they are reported as skipped.
   */
  copyStoredSecret?: (store: Store, from: StoredSecretRef, to: StoredSecretRef) => Promise<void>;
}

/** Where one encrypted secret is stored, named through the Store's own identities. */
export type StoredSecretRef =
  | { kind: 'productSecret'; productKey: string }
  | { kind: 'deviceSecret' | 'previousDeviceSecret'; productKey: string; deviceName: string }
  /** The DeviceToken of one regnwl credential slot. */
  | { kind: 'deviceToken'; productKey: string; deviceName: string; slot: number }
  | { kind: 'appSecret'; appKey: string }
  | { kind: 'secretSetting'; key: string };

export const T0 = '2024-01-01T00:00:00.000Z';
export const T1 = '2024-01-02T00:00:00.000Z';
export const T2 = '2024-01-03T00:00:00.000Z';

/** A cipher with one new key, for cases that do not rotate keys. */
export function oneKeyCipher(): SecretCipher {
  return new KeyringCipher(generateMasterKey());
}

/**
 * Runs `fn` on a fresh store (built with `cipher`, default a new one-key cipher) and always
 * closes it.
 */
export function withStore(makeStore: MakeStore, fn: (store: Store) => Promise<void>, cipher?: SecretCipher): () => Promise<void> {
  return async () => {
    const store = await makeStore(cipher ?? oneKeyCipher());
    try {
      await fn(store);
    } finally {
      await store.close();
    }
  };
}

let seq = 0;
/** Unique per call so tests never collide even on a shared database. */
export function uid(prefix: string): string {
  seq++;
  return `${prefix}${String(seq).padStart(6, '0')}${Math.random().toString(36).slice(2, 8)}`.replace(/[^A-Za-z0-9]/g, '');
}

const productDefaults: Omit<Product, 'productKey' | 'productName' | 'productSecret'> = {
  nodeType: 'DEVICE',
  dynamicRegistration: false,
  preRegistrationFree: false,
  requireTls: false,
  replayProtection: false,
  deviceLimit: null,
  description: '',
  createdAt: T0,
  updatedAt: T0,
};

/** A product with a unique ProductKey and secret. */
export function makeProduct(overrides: Partial<Product> = {}): Product {
  return {
    productKey: uid('a1').slice(0, 16),
    productName: 'Contract product',
    productSecret: 'PsContract' + uid('').slice(0, 10),
    ...productDefaults,
    ...overrides,
  };
}

/** A product with the given ProductKey and fixed fields, for cases that name their keys. */
export function namedProduct(productKey: string, overrides: Partial<Product> = {}): Product {
  return { productKey, productName: 'contract product', productSecret: 'ContractSecret01', ...productDefaults, ...overrides };
}

export function makeDevice(deviceName: string, overrides: Partial<NewDevice> = {}): NewDevice {
  return { iotId: uid('iot'), deviceName, deviceSecret: 'Ds' + uid('sec').padEnd(30, 'x').slice(0, 30), ...overrides };
}

export async function rejectsWith(p: Promise<unknown>, kind: ErrorKind): Promise<ThingAuthError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ThingAuthError, `expected ThingAuthError ${kind}, got ${String(e)}`);
    assert.equal(e.kind, kind, e.message);
    return e;
  }
  assert.fail(`expected ${kind}, but the call succeeded`);
}

/**
 * The Store contract: one suite every adapter (SQLite now, PostgreSQL next) must pass
 * unchanged, in the manner of aedes-persistence's abstract tests. An adapter's test file calls
 * `runFullStoreContract` once; see README.md in this folder.
 */
import { describe } from 'node:test';
import type { MakeStore, StoreContractOptions } from './fixtures.js';
import { boundSecretsContract } from './suites/bound-secrets.js';
import { coreContract } from './suites/core.js';
import { getDevicesByNameContract } from './suites/get-devices-by-name.js';
import { managementTokensContract, reencryptContract, secretSettingsContract } from './suites/management-tokens-and-reencrypt.js';
import { markOnlineManyContract } from './suites/mark-online-many.js';
import { productRulesInTheStoreContract } from './suites/product-rules-in-the-store.js';
import { productWindowAndCountsContract } from './suites/product-window-and-counts.js';
import { rotateDeviceSecretContract } from './suites/rotate-device-secret.js';
import { deviceTokenSlotsContract } from './suites/device-token-slots.js';
import { setProductSecretContract } from './suites/set-product-secret.js';
import { subDeviceRegistrarContract } from './suites/sub-device-registrar.js';
import { storeCopyContract } from './suites/store-copy.js';
import { x509Contract } from './suites/x509-certificates.js';
import { auditPagingContract } from './suites/audit-paging.js';
import { deviceKeysetPagingContract } from './suites/device-keyset-paging.js';

export type { MakeStore, StoreContractOptions, StoredSecretRef } from './fixtures.js';

/**
 * Registers every contract suite for one adapter under `Store contract: ${adapterName}`.
 * `makeStore(cipher)` must return a fresh, migrated, empty store that encrypts with exactly the
 * cipher it is given (the key-rotation cases swap that cipher's keys while the store is open).
 * A new suite goes in suites/ and is added here, never run from its own test file.
 */
export function runFullStoreContract(adapterName: string, makeStore: MakeStore, opts: StoreContractOptions = {}): void {
  describe(`Store contract: ${adapterName}`, () => {
    coreContract(makeStore, opts);
    getDevicesByNameContract(makeStore);
    managementTokensContract(makeStore);
    secretSettingsContract(makeStore);
    reencryptContract(makeStore);
    markOnlineManyContract(makeStore);
    productWindowAndCountsContract(makeStore, opts);
    productRulesInTheStoreContract(makeStore);
    rotateDeviceSecretContract(makeStore, opts);
    deviceTokenSlotsContract(makeStore, opts);
    setProductSecretContract(makeStore);
    boundSecretsContract(makeStore, opts);
    subDeviceRegistrarContract(makeStore);
    storeCopyContract(makeStore);
    x509Contract(makeStore, opts);
    auditPagingContract(makeStore);
    deviceKeysetPagingContract(makeStore);
  });
}

/**
 * `thingauth keys rotate`: re-encrypts every stored secret under a new master key while the
 * server keeps serving.
 *
 * Order matters for crash safety:
 * 1. generate the new key and persist the keyring [new, ...old] (master.key, 0600, atomic
 *    rename) BEFORE anything is written under it: a crash at any later point restarts with a
 *    keyring that reads every row;
 * 2. swap the store's cipher (RotatingCipher) so new writes use the new key at once;
 * 3. re-encrypt the rows still under an older key in small batches (Store.reencryptSecrets),
 *    yielding to the event loop between batches so logins keep being served;
 * 4. when no row is under an older key, retire the old keys: persist [new] and swap again.
 * An interrupted rotation is finished by running it again (it re-encrypts under yet another
 * new key and retires every older one).
 *
 * With THINGAUTH_MASTER_KEY from the environment thingauth cannot persist a key: the operator
 * supplies the new one (THINGAUTH_MASTER_KEY=<new>, THINGAUTH_MASTER_KEY_PREVIOUS=<old>,
 * restart), then the rotation re-encrypts under it; without a previous key it refuses and
 * says how (docs/security.md).
 */
import { ThingAuthError } from '../core/errors.js';
import type { RotatingCipher } from '../core/rotating-cipher.js';
import { generateMasterKey, keyIdOf } from '../core/secret-cipher.js';
import { writeKeyringFile } from '../data-dir.js';
import type { Logger } from '../logger.js';
import type { Store } from '../store/store.js';
import type { AuditLog } from './audit.js';

const CLUSTER_ROTATION_HELP =
  'in a cluster every node must hold the same master keys: give every node the new key as THINGAUTH_MASTER_KEY and the old one as THINGAUTH_MASTER_KEY_PREVIOUS, restart the nodes one by one, then run `thingauth keys rotate` (docs/deployment.md "Master key")';

export interface RotationStatus {
  state: 'idle' | 'running' | 'done' | 'failed';
  /** Where the master key comes from: the data dir's master.key, or the environment. */
  keySource: 'file' | 'env';
  currentKeyId: string;
  /** Keys still accepted for decryption only (non-empty while a rotation runs or was interrupted). */
  olderKeyIds: string[];
  startedAt: string | null;
  finishedAt: string | null;
  /** Secrets re-encrypted by the last (or running) rotation. */
  rewritten: number;
  /** Keys retired by the last rotation. */
  retiredKeyIds: string[];
  error: string | null;
  /** What the operator should do next, if anything. */
  note: string | null;
}

export interface KeyRotationOptions {
  dataDir: string;
  keySource: 'file' | 'env';
  /** Part of a Redis cluster: the key cannot be changed in one node's data dir. */
  clustered?: boolean;
  /** Rows per transaction (default 500): short enough that a login never waits long. */
  batchSize?: number;
}

export const ENV_ROTATION_HELP =
  'the master key comes from THINGAUTH_MASTER_KEY, which thingauth cannot change. To rotate: generate a key ' +
  '(openssl rand -hex 32), restart the server with THINGAUTH_MASTER_KEY=<new key> and THINGAUTH_MASTER_KEY_PREVIOUS=<old key>, ' +
  'run `thingauth keys rotate` to re-encrypt every secret under the new key, then remove THINGAUTH_MASTER_KEY_PREVIOUS';

export class KeyRotationService {
  private status: RotationStatus;
  private running: Promise<void> | undefined;
  private stopping = false;

  constructor(
    private readonly store: Store,
    private readonly cipher: RotatingCipher,
    private readonly audit: AuditLog,
    private readonly logger: Logger,
    private readonly opts: KeyRotationOptions,
  ) {
    this.status = {
      state: 'idle',
      keySource: opts.keySource,
      currentKeyId: cipher.currentKeyId,
      olderKeyIds: cipher.keyIds.slice(1),
      startedAt: null,
      finishedAt: null,
      rewritten: 0,
      retiredKeyIds: [],
      error: null,
      note: cipher.keyIds.length > 1 ? 'older keys are present: run `thingauth keys rotate` to re-encrypt under the current key and retire them' : null,
    };
  }

  current(): RotationStatus {
    return { ...this.status, currentKeyId: this.cipher.currentKeyId, olderKeyIds: this.cipher.keyIds.slice(1) };
  }

  /** Puts a new key in force (steps 1-2) and returns; the re-encryption (3-4) runs in the background. */
  start(): RotationStatus {
    if (this.running) throw new ThingAuthError('CONFLICT', 'a key rotation is already running; see GET /api/v1/keys (thingauth keys status)');
    if (this.stopping) throw new ThingAuthError('CONFLICT', 'the server is shutting down');
    if (this.opts.clustered && this.opts.keySource === 'file') {
      // A new key written into this node's data dir would be known to this process only: the
      // other nodes could not read what it re-encrypts.
      throw new ThingAuthError('CONFLICT', CLUSTER_ROTATION_HELP);
    }
    if (this.opts.keySource === 'env') {
      if (this.cipher.keys.length < 2) throw new ThingAuthError('CONFLICT', ENV_ROTATION_HELP);
      // The operator already put the new key in force; what is left is steps 3-4.
    } else {
      const next = generateMasterKey();
      const keys = [next, ...this.cipher.keys];
      writeKeyringFile(this.opts.dataDir, keys);
      this.cipher.use(keys);
    }
    this.status = {
      ...this.current(),
      state: 'running',
      startedAt: new Date().toISOString(),
      finishedAt: null,
      rewritten: 0,
      retiredKeyIds: [],
      error: null,
      note: null,
    };
    this.logger.info({ keyId: this.cipher.currentKeyId, olderKeyIds: this.cipher.keyIds.slice(1) }, 'key rotation started');
    this.running = this.reencryptAll().finally(() => {
      this.running = undefined;
    });
    return this.current();
  }

  /** Resolves when no rotation is running (tests, shutdown). */
  async whenIdle(): Promise<RotationStatus> {
    await this.running;
    return this.current();
  }

  /** Makes a running rotation stop after its current batch (shutdown); it can be rerun later. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
  }

  private async reencryptAll(): Promise<void> {
    const batchSize = this.opts.batchSize ?? 500;
    try {
      // Normally one pass; a second catches anything an older writer slipped in meanwhile.
      for (let pass = 0; pass < 3; pass++) {
        let cursor: string | undefined;
        do {
          if (this.stopping) throw new Error('stopped by shutdown; run `thingauth keys rotate` again to finish');
          const r = await this.store.reencryptSecrets(cursor, batchSize);
          this.status.rewritten += r.rewritten;
          cursor = r.cursor;
          await new Promise<void>((resolve) => setImmediate(resolve));
        } while (cursor !== undefined);
        if ((await this.store.countSecretsNotUnderCurrentKey()) === 0) break;
      }
      const left = await this.store.countSecretsNotUnderCurrentKey();
      if (left > 0) throw new Error(`${left} secrets are still under an older key`);
      const current = this.cipher.keys[0]!;
      const retired = this.cipher.keys.slice(1).map(keyIdOf);
      // Persist first: if this crashes, the file still lists keys nothing needs, which is harmless.
      if (this.opts.keySource === 'file') writeKeyringFile(this.opts.dataDir, [current]);
      this.cipher.use([current]);
      this.status = {
        ...this.current(),
        state: 'done',
        finishedAt: new Date().toISOString(),
        retiredKeyIds: retired,
        note: this.opts.keySource === 'env' ? 'every secret is under THINGAUTH_MASTER_KEY now: remove THINGAUTH_MASTER_KEY_PREVIOUS from the environment' : null,
      };
      this.logger.info({ keyId: current && keyIdOf(current), retiredKeyIds: retired, rewritten: this.status.rewritten }, 'key rotation done');
      this.audit.record({ action: 'keys.rotate', actor: 'system', result: 'ok', reason: `re-encrypted ${this.status.rewritten} secrets; retired ${retired.join(',') || 'none'}` });
    } catch (err) {
      this.status = { ...this.current(), state: 'failed', finishedAt: new Date().toISOString(), error: (err as Error).message };
      this.logger.error({ err }, 'key rotation failed; every key is kept, run it again to finish');
      this.audit.record({ action: 'keys.rotate', actor: 'system', result: 'error', reason: (err as Error).message });
    }
  }
}

/**
 * A SecretCipher whose keyring can be replaced while the server runs. The store holds this
 * one object for its whole life; key rotation swaps the keyring underneath it, so every
 * encrypt after the swap uses the new key and every older value still decrypts.
 */
import { KeyringCipher, keyIdOf, type SecretCipher } from './secret-cipher.js';

export class RotatingCipher implements SecretCipher {
  private ring: KeyringCipher;
  private keyList: Buffer[];

  /** keys[0] encrypts; the rest only decrypt. */
  constructor(keys: Buffer[]) {
    if (keys.length === 0) throw new Error('RotatingCipher needs at least one key');
    this.keyList = keys.slice();
    this.ring = new KeyringCipher(keys[0]!, keys.slice(1));
  }

  get currentKeyId(): string {
    return this.ring.currentKeyId;
  }

  /** Key ids, current first. */
  get keyIds(): string[] {
    return this.keyList.map(keyIdOf);
  }

  /** The keys, current first (for persisting the keyring). */
  get keys(): Buffer[] {
    return this.keyList.slice();
  }

  /** Replaces the keyring in one step: keys[0] becomes current. */
  use(keys: Buffer[]): void {
    if (keys.length === 0) throw new Error('RotatingCipher needs at least one key');
    this.ring = new KeyringCipher(keys[0]!, keys.slice(1));
    this.keyList = keys.slice();
  }

  encrypt(plain: string, context: string): string {
    return this.ring.encrypt(plain, context);
  }

  decrypt(stored: string, context: string): string {
    return this.ring.decrypt(stored, context);
  }

  decryptUnbound(stored: string): string {
    return this.ring.decryptUnbound(stored);
  }

  needsReencrypt(stored: string): boolean {
    return this.ring.needsReencrypt(stored);
  }
}

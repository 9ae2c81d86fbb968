/** Files the server keeps in its data dir: the master key and the generated admin token (mode 0600). */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { generateMasterKey, parseMasterKey } from './core/secret-cipher.js';

/**
 * Creates the data dir 0700, and tightens an existing one to 0700: it holds the master key,
 * the admin token and the database, and a dir others may list or enter (0755 from a manual
 * mkdir, an image, an older version) lets them read whatever file is not 0600 itself.
 * Returns the mode it had when that was looser, so the caller can say it changed it.
 */
export function ensureDataDir(dataDir: string): { tightenedFrom?: number } {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const mode = fs.statSync(dataDir).mode & 0o777;
  if ((mode & 0o077) === 0) return {};
  fs.chmodSync(dataDir, mode & 0o700);
  return { tightenedFrom: mode };
}

export const MASTER_KEY_FILE = 'master.key';
export const ADMIN_TOKEN_FILE = 'admin-token';

function readOrCreate(file: string, make: () => string): { value: string; created: boolean } {
  try {
    return { value: fs.readFileSync(file, 'utf8').trim(), created: false };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const value = make();
  try {
    // wx: never overwrite a file another process wrote in between.
    fs.writeFileSync(file, value + '\n', { mode: 0o600, flag: 'wx' });
    return { value, created: true };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return { value: fs.readFileSync(file, 'utf8').trim(), created: false };
    throw e;
  }
}

/** THINGAUTH_MASTER_KEY wins; otherwise <dataDir>/master.key, generated on first start. Returns the current key. */
export function loadMasterKey(dataDir: string, fromEnv: string | undefined): Buffer {
  return loadKeyring(dataDir, fromEnv, undefined).keys[0]!;
}

/**
 * The master keyring, current key first. From the environment: THINGAUTH_MASTER_KEY plus any
 * THINGAUTH_MASTER_KEY_PREVIOUS keys (comma-separated) that older values may still be under.
 * From the data dir: master.key holds one key per line, current first; older lines exist
 * only while a key rotation is under way (or was interrupted: running it again finishes it).
 */
export function loadKeyring(dataDir: string, fromEnv: string | undefined, previousFromEnv: string | undefined): { keys: Buffer[]; source: 'env' | 'file' } {
  if (fromEnv) {
    const previous = (previousFromEnv ?? '').split(',').map((s) => s.trim()).filter(Boolean).map(parseMasterKey);
    return { keys: [parseMasterKey(fromEnv), ...previous], source: 'env' };
  }
  const { value } = readOrCreate(path.join(dataDir, MASTER_KEY_FILE), () => generateMasterKey().toString('hex'));
  const keys = value.split('\n').map((l) => l.trim()).filter(Boolean).map(parseMasterKey);
  if (keys.length === 0) throw new Error(`${path.join(dataDir, MASTER_KEY_FILE)} is empty; restore it from a backup (without it no stored secret can be read)`);
  return { keys, source: 'file' };
}

/**
 * Replaces master.key with these keys (current first) atomically: a crash leaves either the
 * old file or the new one, never a torn one. Written 0600 and fsynced before the rename.
 */
export function writeKeyringFile(dataDir: string, keys: Buffer[]): void {
  const file = path.join(dataDir, MASTER_KEY_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, keys.map((k) => k.toString('hex')).join('\n') + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
  try {
    const dirFd = fs.openSync(dataDir, 'r');
    try {
      fs.fsyncSync(dirFd);
    } finally {
      fs.closeSync(dirFd);
    }
  } catch {
    /* directories cannot be fsynced on every platform; the rename is still atomic */
  }
}

/** THINGAUTH_ADMIN_TOKEN wins; otherwise <dataDir>/admin-token, generated (and reported as new) on first start. */
export function loadAdminToken(dataDir: string, fromEnv: string | undefined): { token: string; created: boolean } {
  if (fromEnv) return { token: fromEnv, created: false };
  const r = readOrCreate(path.join(dataDir, ADMIN_TOKEN_FILE), () => randomBytes(24).toString('base64url'));
  return { token: r.value, created: r.created };
}

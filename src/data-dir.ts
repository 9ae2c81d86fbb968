/** Files the server keeps in its data dir: the master key and the generated admin token (mode 0600). */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { generateMasterKey, parseMasterKey } from './core/secret-cipher.js';

export function ensureDataDir(dataDir: string): void {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
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

/** THINGAUTH_MASTER_KEY wins; otherwise <dataDir>/master.key, generated on first start. */
export function loadMasterKey(dataDir: string, fromEnv: string | undefined): Buffer {
  if (fromEnv) return parseMasterKey(fromEnv);
  const { value } = readOrCreate(path.join(dataDir, MASTER_KEY_FILE), () => generateMasterKey().toString('hex'));
  return parseMasterKey(value);
}

/** THINGAUTH_ADMIN_TOKEN wins; otherwise <dataDir>/admin-token, generated (and reported as new) on first start. */
export function loadAdminToken(dataDir: string, fromEnv: string | undefined): { token: string; created: boolean } {
  if (fromEnv) return { token: fromEnv, created: false };
  const r = readOrCreate(path.join(dataDir, ADMIN_TOKEN_FILE), () => randomBytes(24).toString('base64url'));
  return { token: r.value, created: r.created };
}

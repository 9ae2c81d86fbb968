/**
 * What both store adapters name alike: the column of each patchable product and device field,
 * and a device row's identity as its secrets are bound to it (secret-binding.ts).
 */
import type { DevicePatch, ProductPatch } from './store.js';

export const PRODUCT_COLUMNS: Record<keyof ProductPatch, string> = {
  productName: 'product_name',
  description: 'description',
  dynamicRegistration: 'dynamic_registration',
  preRegistrationFree: 'pre_registration_free',
  requireTls: 'require_tls',
  replayProtection: 'replay_protection',
  deviceLimit: 'device_limit',
  nodeType: 'node_type',
  timestampWindowSeconds: 'timestamp_window_seconds',
};

export const DEVICE_COLUMNS: Record<keyof DevicePatch, string> = {
  enabled: 'enabled',
  deviceSecret: 'device_secret',
  nickname: 'nickname',
  activatedAt: 'activated_at',
  lastAuthError: 'last_auth_error',
  lastAuthErrorAt: 'last_auth_error_at',
  lastAuthErrorSource: 'last_auth_error_source',
};

/** A device row's identity as its secrets are bound to it (secret-binding.ts). */
export function deviceIds(iotId: unknown, productKey: unknown, deviceName: unknown): unknown[] {
  return [iotId, productKey, deviceName];
}

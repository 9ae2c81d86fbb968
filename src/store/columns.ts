/**
 * What both store adapters share: the column of each patchable product and device field, a
 * device row's identity as its secrets are bound to it (secret-binding.ts), and the records
 * built from rows whose columns mean the same in both (audit, regnwl slots, tokens).
 */
import type { Device, DeviceTokenSlot } from '../core/records.js';
import type { AuditEntry, DevicePatch, ManagementTokenRecord, NewDevice, ProductPatch } from './store.js';

type Row = Record<string, unknown>;

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

/** The record of a device row just inserted from `d`, with the table's defaults for the rest. */
export function newDeviceRecord(productKey: string, d: NewDevice, createdAt: string): Device {
  return {
    iotId: d.iotId,
    productKey,
    deviceName: d.deviceName,
    deviceSecret: d.deviceSecret,
    previousDeviceSecret: null,
    previousSecretExpiresAt: null,
    nickname: d.nickname ?? null,
    enabled: true,
    online: false,
    createdAt,
    activatedAt: d.activatedAt ?? null,
    lastOnlineAt: null,
    gatewayIotId: null,
    registeredByGatewayIotId: null,
    lastAuthError: null,
    lastAuthErrorAt: null,
    lastAuthErrorSource: null,
  };
}

export function auditEntryOf(r: Row): AuditEntry {
  return {
    // PostgreSQL returns a BIGINT as text.
    id: Number(r.id),
    at: r.at as string,
    action: r.action as string,
    actor: r.actor as string,
    productKey: (r.product_key as string | null) ?? null,
    deviceName: (r.device_name as string | null) ?? null,
    sourceAddress: (r.source_address as string | null) ?? null,
    result: r.result as AuditEntry['result'],
    reason: (r.reason as string | null) ?? null,
  };
}

/** A device_tokens row without its token. */
export function tokenSlotOf(r: Row): DeviceTokenSlot {
  return {
    slot: r.slot as number,
    clientId: r.client_id as string,
    createdAt: r.created_at as string,
    activatedAt: (r.activated_at as string | null) ?? null,
    revokedAt: (r.revoked_at as string | null) ?? null,
  };
}

export function managementTokenOf(r: Row): ManagementTokenRecord {
  return {
    id: r.id as string,
    name: r.name as string,
    scope: r.scope as ManagementTokenRecord['scope'],
    tokenHash: r.token_hash as string,
    createdAt: r.created_at as string,
  };
}

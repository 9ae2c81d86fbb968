/**
 * Audit entries for the per-item outcomes of one gateway message (sub-device registration,
 * sub-device sessions, topology), so the three services record items the same way. What a
 * success's reason says differs by service, so the caller supplies it.
 */
import { SubDeviceCodes as C } from '../core/sub-device-protocol.js';
import type { AuditEntry } from '../store/store.js';
import type { DeviceRef } from './events.js';

export interface AuditedOutcome {
  productKey: string;
  deviceName: string;
  code: number;
  message: string;
}

/** The audit actor of a message the gateway itself sent. */
export function gatewayActor(gateway: DeviceRef): string {
  return `gateway:${gateway.productKey}/${gateway.deviceName}`;
}

/**
 * One entry per outcome, in order. Names are cut to 64 characters (an item refused for its
 * names may carry anything) and an empty one is recorded as null; a failure's reason is its
 * Alink code and message.
 */
export function outcomeAuditEntries(
  at: string,
  action: string,
  actor: string,
  outcomes: readonly AuditedOutcome[],
  successReason: (successMessage: string) => string | null,
): AuditEntry[] {
  return outcomes.map((o) => ({
    at,
    action,
    actor,
    productKey: o.productKey.slice(0, 64) || null,
    deviceName: o.deviceName.slice(0, 64) || null,
    result: o.code === C.SUCCESS ? 'ok' : 'deny',
    reason: o.code === C.SUCCESS ? successReason(o.message) : `${o.code} ${o.message}`,
  }));
}

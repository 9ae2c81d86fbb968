/**
 * Builds a CONNECT refusal from its kind: the CONNACK code and the MQTT 5 reason code come
 * from the one refusal table (core/refusals.ts), so an authenticator says WHY, never which
 * number that is.
 */
import { connackFor, REFUSALS, type RefusalKind, type RefusalPath } from '../core/refusals.js';
import type { ConnectDeny } from './connect-authenticators.js';

export type DenyFields = Pick<ConnectDeny, 'device' | 'productKey' | 'deviceName'>;

export function refuseConnect(refusal: RefusalKind, path: RefusalPath, reason: string, fields: DenyFields = {}): ConnectDeny {
  const v5 = REFUSALS[refusal].v5;
  return {
    ok: false,
    refusal,
    returnCode: connackFor(refusal, path),
    ...(v5 !== undefined ? { v5ReasonCode: v5 } : {}),
    reason,
    ...fields,
  };
}

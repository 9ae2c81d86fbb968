/**
 * The audit entry and the metrics of one MQTT CONNECT decision, called from the single point
 * where the broker acts on it (broker.ts authenticate). Records the method (the ConnectKind),
 * the identity claimed, the source address, the result and the reason; never the password
 * or the signature.
 */
import type { AppContext } from '../context.js';
import { REFUSALS } from '../core/refusals.js';
import { connectKindOf, type ConnectAttempt, type ConnectDecision } from './connect-authenticators.js';
import { presentsDeviceCertificate } from './x509-authenticator.js';

function claimedIdentity(username: string | undefined): { productKey: string | null; deviceName: string | null } {
  if (typeof username !== 'string') return { productKey: null, deviceName: null };
  const amp = username.lastIndexOf('&');
  return amp > 0 ? { deviceName: username.slice(0, amp), productKey: username.slice(amp + 1) } : { productKey: null, deviceName: null };
}

/** `decision` undefined = the decision itself failed (store error): refused with CONNACK 3. */
export function recordConnectDecision(ctx: AppContext, attempt: ConnectAttempt, decision: ConnectDecision | undefined): void {
  const { audit, metrics } = ctx.services;
  const plain = connectKindOf(attempt);
  // A certificate login (issue 16) is audited as mqtt.connect.x509.
  const kind = (plain === 'sign' || plain === 'unknown') && presentsDeviceCertificate(attempt) ? 'x509' : plain;
  const action = `mqtt.connect.${kind}`;
  const actor = attempt.username === undefined ? '(no username)' : attempt.username;
  if (decision?.ok) {
    const id = decision.identity;
    metrics.login('mqtt', 'accepted', '');
    audit.record({
      action,
      actor,
      productKey: id.productKey || null,
      deviceName: id.deviceName || null,
      sourceAddress: attempt.remoteAddress,
      result: 'allow',
      reason: `${id.kind} over ${attempt.transport}${decision.auditNote ? `; ${decision.auditNote}` : ''}`,
    });
    return;
  }
  const claimed = claimedIdentity(attempt.username);
  const reason = decision ? decision.reason : 'server unavailable (store error)';
  const code = decision ? decision.returnCode : 3;
  metrics.login('mqtt', 'refused', REFUSALS[decision ? decision.refusal : 'server-error'].label);
  // A throttled source's refusals after the first of its cool-down: counted, not audited (issue 11 item 11).
  if (decision?.skipAudit) return;
  audit.record({
    action,
    actor,
    productKey: decision?.device?.productKey ?? decision?.productKey ?? claimed.productKey,
    deviceName: decision?.device?.deviceName ?? decision?.deviceName ?? claimed.deviceName,
    sourceAddress: attempt.remoteAddress,
    result: 'deny',
    reason: `CONNACK ${code}: ${reason}`,
  });
}

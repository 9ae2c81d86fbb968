/**
 * Revoking a device certificate (services/x509.ts) ends the session that logged in with it,
 * and only that one: the device's session on another certificate (during a rotation) stays.
 * The event reaches every node through the registry events (cluster-wide relay).
 */
import type { AppContext } from '../context.js';
import type { Logger } from '../logger.js';
import type { SessionRegistry } from './sessions.js';

export function startCertificateRevocationKicks(ctx: AppContext, sessions: SessionRegistry, logger: Logger): () => void {
  const onRevoked = (ref: { iotId: string; productKey: string; deviceName: string; serial: string }) => {
    const s = sessions.byIotId(ref.iotId);
    if (!s || s.identity.certSerial !== ref.serial || s.client.closed) return;
    s.closeReason = 'certificate revoked';
    s.client.close();
    logger.info({ productKey: ref.productKey, deviceName: ref.deviceName, serial: ref.serial }, 'mqtt session closed: its certificate was revoked');
  };
  ctx.services.events.on('device.certificate.revoked', onRevoked);
  return () => ctx.services.events.off('device.certificate.revoked', onRevoked);
}

/**
 * Revoking a regnwl credential slot (services/regnwl-slots.ts) ends the session running on that
 * slot's token, and only that one: the device's session on another slot stays (sessions are
 * one per DeviceName; the identity remembers which slot opened it).
 */
import type { AppContext } from '../context.js';
import type { Logger } from '../logger.js';
import type { SessionRegistry } from './sessions.js';

export function startSlotRevocationKicks(ctx: AppContext, sessions: SessionRegistry, logger: Logger): () => void {
  const onRevoked = (ref: { iotId: string; productKey: string; deviceName: string; slot: number }) => {
    const s = sessions.byIotId(ref.iotId);
    if (!s || s.identity.slot !== ref.slot || s.client.closed) return;
    s.closeReason = 'credential slot revoked';
    s.client.close();
    logger.info({ productKey: ref.productKey, deviceName: ref.deviceName, slot: ref.slot }, 'mqtt session closed: its regnwl slot was revoked');
  };
  ctx.services.events.on('device.slot.revoked', onRevoked);
  return () => ctx.services.events.off('device.slot.revoked', onRevoked);
}

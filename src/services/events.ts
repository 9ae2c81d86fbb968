/**
 * Changes other parts react to: the broker kicks sessions of disabled/deleted devices, the
 * authenticator drops cached records. Emitted by services after the store committed.
 *
 * The change is already committed when an event is emitted, so a listener's failure must not
 * reach the emitter: it would turn a done change into an HTTP 500 (or a failed MQTT reply) and
 * skip the listeners after it (a cache never dropped). `emit` calls every listener, catches
 * what one throws or rejects, and logs it (references only, never a record).
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../logger.js';

export interface DeviceRef {
  iotId: string;
  productKey: string;
  deviceName: string;
}

export interface RegistryEventMap {
  /** Anything about the device changed (secret, switches, status); caches must drop it. */
  'device.changed': [DeviceRef];
  'device.disabled': [DeviceRef];
  'device.enabled': [DeviceRef];
  'device.deleted': [DeviceRef];
  'device.reset': [DeviceRef];
  /** An operator revoked one regnwl credential slot: a session running on it must end. */
  'device.slot.revoked': [DeviceRef & { slot: number }];
  /** An operator revoked a device certificate (or a rotation ended it at once): a session logged in with it must end. */
  'device.certificate.revoked': [DeviceRef & { serial: string }];
  'product.changed': [{ productKey: string }];
  /**
   * `byGateway`: the gateway named here made the change itself (its own thing/topo/add or
   * topo/delete) and already has its reply; otherwise (operator, a move to another gateway,
   * a deleted sub-device) it is told with a thing/topo/change notice.
   */
  'topology.changed': [{ gateway: DeviceRef; removed: DeviceRef[]; added: DeviceRef[]; byGateway?: boolean }];
  /**
   * An operator asks connected devices to run bootstrap again (services/bootstrap.ts). The
   * broker hands the message to each live session it matches and counts them in `delivered`
   * (listeners run synchronously, so the emitter reads the count right after emit).
   */
  'bootstrap.notify': [BootstrapNotifyOrder];
}

export interface BootstrapNotifyOrder {
  productKey: string;
  /** Absent: every device of the product. */
  deviceName?: string;
  /** The message for a device (its own id and topic are filled per device). */
  messageFor(deviceName: string): { topic: string; payload: string };
  delivered: number;
}

/** productKey/deviceName/iotId of whatever the event names: what a log line may carry. */
function refsOf(args: unknown[]): unknown[] {
  const ref = (v: unknown): unknown => {
    if (v === null || typeof v !== 'object') return v;
    const o = v as Record<string, unknown>;
    if (typeof o.deviceName === 'string' || typeof o.iotId === 'string') return { productKey: o.productKey, deviceName: o.deviceName, iotId: o.iotId };
    if (typeof o.productKey === 'string') return { productKey: o.productKey };
    if (o.gateway !== undefined) return { gateway: ref(o.gateway) };
    return undefined;
  };
  return args.map(ref);
}

export class RegistryEvents extends EventEmitter<RegistryEventMap> {
  constructor(private readonly logger?: Logger) {
    super();
    this.setMaxListeners(100);
  }

  override emit<K extends keyof RegistryEventMap>(eventName: K, ...args: RegistryEventMap[K]): boolean {
    // rawListeners keeps once() wrappers, which remove themselves when called.
    const listeners = this.rawListeners(eventName) as ((...a: unknown[]) => unknown)[];
    for (const listener of listeners) {
      try {
        const r = listener.apply(this, args);
        if (r !== null && typeof r === 'object' && typeof (r as Promise<unknown>).then === 'function') {
          (r as Promise<unknown>).then(undefined, (err: unknown) => this.listenerFailed(eventName, args, err));
        }
      } catch (err) {
        this.listenerFailed(eventName, args, err);
      }
    }
    return listeners.length > 0;
  }

  private listenerFailed(eventName: string, args: unknown[], err: unknown): void {
    const e = err instanceof Error ? { name: err.name, message: err.message, stack: err.stack } : { message: String(err) };
    this.logger?.error({ event: eventName, refs: refsOf(args), err: e }, 'registry event listener failed; the change itself is committed');
  }
}

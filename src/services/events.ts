/**
 * Changes other parts react to: the broker kicks sessions of disabled/deleted devices, the
 * authenticator drops cached records. Emitted by services after the store committed.
 */
import { EventEmitter } from 'node:events';

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

export class RegistryEvents extends EventEmitter<RegistryEventMap> {
  constructor() {
    super();
    this.setMaxListeners(100);
  }
}

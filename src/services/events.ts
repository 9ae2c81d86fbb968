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
  /** An operator revoked one regnwl credential slot: a session running on it must end. */
  'device.slot.revoked': [DeviceRef & { slot: number }];
  'product.changed': [{ productKey: string }];
  /**
   * `byGateway`: the gateway named here made the change itself (its own thing/topo/add or
   * topo/delete) and already has its reply; otherwise (operator, a move to another gateway,
   * a deleted sub-device) it is told with a thing/topo/change notice.
   */
  'topology.changed': [{ gateway: DeviceRef; removed: DeviceRef[]; added: DeviceRef[]; byGateway?: boolean }];
}

export class RegistryEvents extends EventEmitter<RegistryEventMap> {
  constructor() {
    super();
    this.setMaxListeners(100);
  }
}

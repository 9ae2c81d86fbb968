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
  'topology.changed': [{ gateway: DeviceRef; removed: DeviceRef[]; added: DeviceRef[] }];
}

export class RegistryEvents extends EventEmitter<RegistryEventMap> {
  constructor() {
    super();
    this.setMaxListeners(100);
  }
}

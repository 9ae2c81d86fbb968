/** Records as the services see them. Secrets are plaintext here; the store keeps them encrypted. */

export type NodeType = 'DEVICE' | 'GATEWAY' | 'SUB_DEVICE';
export const NODE_TYPES: readonly NodeType[] = ['DEVICE', 'GATEWAY', 'SUB_DEVICE'];

export type DeviceStatus = 'UNACTIVE' | 'ONLINE' | 'OFFLINE' | 'DISABLE';
export const DEVICE_STATUSES: readonly DeviceStatus[] = ['UNACTIVE', 'ONLINE', 'OFFLINE', 'DISABLE'];

export interface ProductSettings {
  /** Refuse device logins that do not arrive over TLS (by the transport actually used). */
  requireTls: boolean;
  /** Dynamic registration randoms are single-use per device. Off by default: iotkit sends a constant. */
  replayProtection: boolean;
  /** Maximum devices; null = server default. */
  deviceLimit: number | null;
  /**
   * Replay window (s): a login that carries a timestamp (ms or s) must be within this many
   * seconds of the server clock. Absent = off, the default: official SDKs send fixed
   * timestamps (spec 0.2).
   */
  timestampWindowSeconds?: number;
}

export interface Product extends ProductSettings {
  productKey: string;
  productName: string;
  productSecret: string;
  nodeType: NodeType;
  dynamicRegistration: boolean;
  preRegistrationFree: boolean;
  description: string;
  createdAt: string;
  updatedAt: string;
}

export interface Device {
  iotId: string;
  productKey: string;
  deviceName: string;
  deviceSecret: string;
  /**
   * The secret before the last rotation, accepted until previousSecretExpiresAt (ISO) so a
   * fleet can be re-keyed over the air (core/secret-rotation.ts); null when none. Never
   * shown by list/get: PublicDevice has neither.
   */
  previousDeviceSecret: string | null;
  previousSecretExpiresAt: string | null;
  nickname: string | null;
  enabled: boolean;
  online: boolean;
  createdAt: string;
  activatedAt: string | null;
  lastOnlineAt: string | null;
  /** iotId of the gateway this sub-device is attached to. */
  gatewayIotId: string | null;
  /**
   * iotId of the gateway that received this sub-device's DeviceSecret through gateway
   * registration (thing/sub/register, product_register); null when none did or an operator
   * released it. The sub-device is bound to `gatewayIotId ?? registeredByGatewayIotId`.
   */
  registeredByGatewayIotId: string | null;
  /** Why the last login was refused, for operators (never a secret). */
  lastAuthError: string | null;
  /** When that refusal happened (ISO time). */
  lastAuthErrorAt: string | null;
  /** Where it came from: transport and source address, e.g. `mqtt/tcp 203.0.113.7`. */
  lastAuthErrorSource: string | null;
}

/** The gateway a sub-device is bound to: its topology's, else the one that registered it. */
export function boundGatewayOf(d: Pick<Device, 'gatewayIotId' | 'registeredByGatewayIotId'>): string | null {
  return d.gatewayIotId ?? d.registeredByGatewayIotId;
}

export function deviceStatus(d: Pick<Device, 'enabled' | 'online' | 'activatedAt'>): DeviceStatus {
  if (!d.enabled) return 'DISABLE';
  if (d.online) return 'ONLINE';
  return d.activatedAt ? 'OFFLINE' : 'UNACTIVE';
}

/**
 * Pre-registration-free credentials (spec 3.2): up to this many physical devices may activate
 * per (ProductKey, ProductSecret, DeviceName) through regnwl, each with its own slot.
 */
export const MAX_REGNWL_SLOTS = 5;

/** One regnwl credential slot as operators see it: never the DeviceToken. */
export interface DeviceTokenSlot {
  /** 1..MAX_REGNWL_SLOTS. */
  slot: number;
  /** The issued ClientID (not a secret: devices send it in clear in every CONNECT). */
  clientId: string;
  createdAt: string;
  /** First connwl login with this slot's token; null = issued, not yet used. */
  activatedAt: string | null;
  /** Set by an operator's revoke; the token is destroyed and refused from then on. */
  revokedAt: string | null;
}

/** A live slot with its token, for the connwl check and the regnwl answer only. */
export interface DeviceTokenCredential extends DeviceTokenSlot {
  deviceToken: string;
}

/** A device as the API shows it: no secret, no token. */
export interface PublicDevice {
  iotId: string;
  productKey: string;
  deviceName: string;
  nickname: string | null;
  status: DeviceStatus;
  createdAt: string;
  activatedAt: string | null;
  lastOnlineAt: string | null;
  gateway: { productKey: string; deviceName: string; iotId: string } | null;
  lastAuthError: string | null;
  lastAuthErrorAt: string | null;
  lastAuthErrorSource: string | null;
}

/** Product settings a create call or an import row may give: absent = default on create, not compared on re-import. */
export interface ProductSettingsInput {
  nodeType?: NodeType;
  dynamicRegistration?: boolean;
  preRegistrationFree?: boolean;
  requireTls?: boolean;
  replayProtection?: boolean;
  deviceLimit?: number | null;
  /** Replay window in seconds; null or 0 = off. */
  timestampWindowSeconds?: number | null;
  description?: string;
}

export type PublicProduct = Omit<Product, 'productSecret' | 'timestampWindowSeconds'> & { timestampWindowSeconds: number | null };

export function publicProduct(p: Product): PublicProduct {
  const { productSecret: _omit, ...rest } = p;
  return { ...rest, timestampWindowSeconds: p.timestampWindowSeconds ?? null };
}

/**
 * Bootstrap (C Link SDK 4.x `components/bootstrap`): the device asks the auth endpoint which
 * MQTT endpoint to use, and may later be told on `thing/bootstrap/notify` to ask again.
 * Formats and their sources: docs/devices.md "Bootstrap". Pure: no I/O.
 */
import { isIP } from 'node:net';

export const BOOTSTRAP_PATH = '/auth/bootstrap';

export interface MqttEndpoint {
  host: string;
  port: number;
}

/** `/sys/{pk}/{dn}/thing/bootstrap/notify`: platform -> device (a downlink). */
export function bootstrapNotifyTopic(productKey: string, deviceName: string): string {
  return `/sys/${productKey}/${deviceName}/thing/bootstrap/notify`;
}

/** `.../notify_reply`: device -> platform, `{"id":..,"code":200,"data":{}}`. */
export function bootstrapNotifyReplyTopic(productKey: string, deviceName: string): string {
  return `/sys/${productKey}/${deviceName}/thing/bootstrap/notify_reply`;
}

/**
 * The reconnect order. The SDK reads only `id` (echoed in its reply) and `cmd` (an unsigned
 * integer; 0 = "ask the bootstrap endpoint again", the only value the cloud documents).
 * The endpoint is not in the message: the device learns it from its next bootstrap request.
 */
export function bootstrapNotifyMessage(id: string): string {
  return JSON.stringify({ id, version: '1.0', method: 'thing.bootstrap.notify', params: { cmd: 0 } });
}

/**
 * The success answer. The C SDK finds `"host"` and `"port"` by a flat key search anywhere in
 * the body (core_json_value: no white space allowed between `"key"`, `:` and the value, so
 * compact JSON only) and reads port as decimal digits; firmware that parses the cloud's answer
 * as JSON reads `data.resources.mqtt.host|port`. This shape satisfies both.
 */
export function bootstrapAnswer(endpoint: MqttEndpoint): string {
  return JSON.stringify({ code: 200, data: { resources: { mqtt: { host: endpoint.host, port: endpoint.port } } }, message: 'success' });
}

export function bootstrapRefusal(code: number, message: string): string {
  return JSON.stringify({ code, message, data: null });
}

const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/**
 * A host name or IP literal a device can be sent to. Nothing else: the value goes into the
 * answer unescaped as far as the SDK's scanner is concerned (a `"` would end it early).
 */
export function isValidPublicHost(host: unknown): host is string {
  if (typeof host !== 'string' || host.length === 0 || host.length > 253) return false;
  if (isIP(host) !== 0) return true;
  return host.split('.').every((label) => LABEL.test(label));
}

/** The host part of a Host header (`name`, `name:port`, `[v6]:port`), if it is a valid host. */
export function hostFromHostHeader(value: string | undefined): string | undefined {
  if (!value) return undefined;
  let host = value.trim();
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    if (end < 0) return undefined;
    host = host.slice(1, end);
  } else {
    const colon = host.lastIndexOf(':');
    if (colon >= 0 && host.indexOf(':') === colon) host = host.slice(0, colon);
  }
  return isValidPublicHost(host) ? host : undefined;
}

/** Region ids as the SDK puts them in `GET /auth/bootstrap/regionId/<region>` (cn-shanghai, ap-southeast-1). */
export const REGION_ID_RE = /^[A-Za-z0-9-]{1,64}$/;

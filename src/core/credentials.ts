/**
 * Parsing of what a device presents in an MQTT CONNECT (spec 1.1-1.4, 3.1, 3.3).
 * Pure: no I/O, no secrets compared here.
 */

export type AuthType = 'sign' | 'register' | 'regnwl' | 'connwl';

export interface ParsedClientId {
  /** The part before the first `|`: the device-chosen client id that is signed. */
  clientId: string;
  /** Extension items, keys as sent (authtype is normalised to authType). */
  ext: Record<string, string>;
}

/** ASCII white space: space, tab, LF, VT, FF, CR. */
function isAsciiSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

/** `raw.slice(from, to)` without the ASCII white space at either end. */
function trimmedSlice(raw: string, from: number, to: number): string {
  while (from < to && isAsciiSpace(raw.charCodeAt(from))) from++;
  while (to > from && isAsciiSpace(raw.charCodeAt(to - 1))) to--;
  return raw.slice(from, to);
}

/**
 * Splits `id|k=v,k=v|`: left of the first `|` is the client id (verbatim: it is what the
 * device signed); the text up to the last `|` is a comma list (the Node browser builds put a
 * `|` inside `lan=JS|WX`). ASCII white space around an item, a key or a value is dropped (an
 * npm Node SDK writes its list over several lines: `securemode=3,\n        signmethod=...`,
 * and the cloud accepts it). Empty items are skipped, items split at the first `=`. Returns
 * undefined when there is no extension.
 */
export function parseMqttClientId(raw: string): ParsedClientId | undefined {
  if (typeof raw !== 'string') return undefined;
  const first = raw.indexOf('|');
  const last = raw.lastIndexOf('|');
  if (first < 0 || last === first) return undefined;
  const ext: Record<string, string> = Object.create(null);
  // Every CONNECT goes through here: walk the items with indexOf instead of split() so no
  // intermediate array or item strings are made (half the time of the split version).
  for (let i = first + 1; i < last; ) {
    let end = raw.indexOf(',', i);
    if (end < 0 || end > last) end = last;
    const eq = raw.indexOf('=', i);
    const hasValue = eq >= 0 && eq < end;
    let key = trimmedSlice(raw, i, hasValue ? eq : end);
    if (key !== '' || hasValue) {
      if (key === 'authtype') key = 'authType';
      // Values are always strings, so undefined means "not seen yet": the first item wins.
      if (ext[key] === undefined) ext[key] = hasValue ? trimmedSlice(raw, eq + 1, end) : '';
    }
    i = end + 1;
  }
  return { clientId: raw.slice(0, first), ext };
}

export interface ParsedUsername {
  deviceName: string;
  productKey: string;
}

/** Username `deviceName&productKey`. DeviceNames cannot contain `&`, so split at the last one. */
export function parseMqttUsername(username: string | undefined): ParsedUsername | undefined {
  if (typeof username !== 'string') return undefined;
  const amp = username.lastIndexOf('&');
  if (amp <= 0 || amp === username.length - 1) return undefined;
  return { deviceName: username.slice(0, amp), productKey: username.slice(amp + 1) };
}

export function authTypeOf(ext: Record<string, string>): AuthType | 'unknown' {
  const t = ext.authType;
  if (t === undefined || t === '') return 'sign';
  if (t === 'register' || t === 'regnwl' || t === 'connwl') return t;
  return 'unknown';
}

/** Sign pairs for a device-secret CONNECT (spec 1.2): timestamp only when present. */
export function connectSignPairs(clientId: string, deviceName: string, productKey: string, timestamp?: string) {
  return { clientId, deviceName, productKey, timestamp };
}

/** Sign pairs for dynamic registration, HTTPS and MQTT (spec 2, 3.1). */
export function registrationSignPairs(deviceName: string, productKey: string, random: string) {
  return { deviceName, productKey, random };
}

export const KEEPALIVE_MIN = 30;
export const KEEPALIVE_MAX = 1200;

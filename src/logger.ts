/** The process logger: pino with secrets redacted by path, whatever object they ride in. */
import { pino, type Logger } from 'pino';

/** Keys that hold a secret wherever they appear. */
export const SECRET_KEYS = [
  'password',
  'secret',
  'sign',
  'token',
  'deviceSecret',
  'previousDeviceSecret',
  'productSecret',
  'deviceToken',
  'appSecret',
  'adminToken',
  'authorization',
];

/**
 * Every secret key at the top level and up to three levels down: a record that rides inside
 * another object (`{ decision: { device: { deviceSecret } } }`, an error's `details.device`)
 * is redacted too. Code logs references (productKey, deviceName, iotId), never records
 * (issue 11 item 17); this is the net under that rule.
 */
export const REDACT_PATHS = [
  ...SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`, `*.*.*.${k}`]),
  'req.headers.authorization',
  'req.headers.password',
];

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { svc: 'thingauth' } },
    destination ?? process.stdout,
  );
}

export type { Logger };

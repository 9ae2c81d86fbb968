/** The process logger: pino with secrets redacted by path, whatever object they ride in. */
import { pino, type Logger } from 'pino';

export const REDACT_PATHS = [
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
  '*.password',
  '*.secret',
  '*.sign',
  '*.token',
  '*.deviceSecret',
  '*.previousDeviceSecret',
  '*.productSecret',
  '*.deviceToken',
  '*.appSecret',
  '*.authorization',
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

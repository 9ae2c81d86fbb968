/**
 * TLS profiles. `compat` (default) also accepts TLS 1.2 with RSA key exchange and AES-CBC,
 * which is all the C Link SDK's bundled TLS speaks; `strict` allows only forward-secret AEAD suites.
 */
import type { SecureContextOptions } from 'node:tls';
import type { TlsProfile } from '../config.js';

const STRICT_TLS12 = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
];

const COMPAT_EXTRA = [
  'ECDHE-RSA-AES128-SHA256',
  'ECDHE-RSA-AES256-SHA384',
  'ECDHE-RSA-AES128-SHA',
  'ECDHE-RSA-AES256-SHA',
  'AES128-GCM-SHA256',
  'AES256-GCM-SHA384',
  'AES128-SHA256',
  'AES256-SHA256',
  'AES128-SHA',
  'AES256-SHA',
];

export function tlsOptionsFor(profile: TlsProfile): Pick<SecureContextOptions, 'ciphers' | 'minVersion' | 'honorCipherOrder'> {
  const ciphers = profile === 'strict' ? STRICT_TLS12 : [...STRICT_TLS12, ...COMPAT_EXTRA];
  return { ciphers: ciphers.join(':'), minVersion: 'TLSv1.2', honorCipherOrder: true };
}

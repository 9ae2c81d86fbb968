/** Product settings an X.509 product excludes (issue 16), one wording for the services and both store adapters. */
import { ThingAuthError } from './errors.js';

/**
 * An X.509 product (issue 16) keeps dynamic registration off and its nodeType directly connected:
 * judged by updateProduct (patch switching either on) and setProductAuth (choosing x509) inside
 * their transactions, so two nodes racing the two changes cannot both pass. undefined = allowed.
 */
export function x509SettingsConflict(productKey: string, authMode: string, dynamicRegistration: boolean, nodeType: string): ThingAuthError | undefined {
  if (authMode !== 'x509') return undefined;
  if (dynamicRegistration) {
    return new ThingAuthError('CONFLICT', `product ${productKey} authenticates its devices with X.509 certificates (authMode x509): dynamic registration would hand out DeviceSecrets that every login refuses; it cannot be switched on`, { field: 'dynamicRegistration' });
  }
  if (nodeType === 'SUB_DEVICE') {
    return new ThingAuthError('CONFLICT', `product ${productKey} authenticates its devices with X.509 certificates (authMode x509): a SUB_DEVICE product logs in through its gateway with DeviceSecrets`, { field: 'nodeType' });
  }
  return undefined;
}

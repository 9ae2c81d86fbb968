/**
 * Product and device rules every Store adapter decides inside its own transaction (so they hold with
 * several writers on one database), with one wording for all adapters.
 */
import { ThingAuthError } from '../core/errors.js';

/** updateProduct's refusal: a product's nodeType is fixed while it has devices. */
export function nodeTypeLocked(productKey: string, devices: number): ThingAuthError {
  return new ThingAuthError('CONFLICT', `nodeType of product ${productKey} cannot change while it has devices (${devices})`, { field: 'nodeType', devices });
}

/** updateProduct's refusal when the product as updated would be preRegistrationFree without dynamicRegistration. */
export function freeWithoutDynamic(): ThingAuthError {
  return new ThingAuthError('INVALID_ARGUMENT', 'preRegistrationFree requires dynamicRegistration', { field: 'preRegistrationFree' });
}

/**
 * issueDeviceTokenSlot's refusal, judged on the device row in the writing transaction: a device
 * activated with its DeviceSecret (activated, no slot ever issued) gets no regnwl slot, nor a
 * device bound to a gateway (it registers through that gateway).
 */
export function slotRefusal(activated: boolean, slotRows: number, boundGateway: string | null | undefined): 'activated' | 'bound' | undefined {
  if (activated && slotRows === 0) return 'activated';
  if (boundGateway) return 'bound';
  return undefined;
}

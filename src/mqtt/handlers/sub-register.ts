/**
 * Sub-device dynamic registration through the gateway (spec 4.1, 4.2):
 * `/sys/{gw}/thing/sub/register` and `/sys/{gw}/thing/proxy/provisioning/product_register`,
 * answered on `_reply` with each sub-device's DeviceSecret.
 */
import { compileTopicPattern } from './topic-pattern.js';
import { handleGatewayRequest } from './gateway-link.js';
import type { TopicHandler } from './index.js';

export const subRegisterHandler: TopicHandler = {
  name: 'thing/sub/register',
  match: compileTopicPattern('/sys/{productKey}/{deviceName}/thing/sub/register'),
  handle: (hctx, client, params, payload, packet) =>
    handleGatewayRequest(hctx, client, params, payload, packet, (link, p) => hctx.app.services.subDeviceRegistration.register(link.gateway, p)),
};

export const proxyProductRegisterHandler: TopicHandler = {
  name: 'thing/proxy/provisioning/product_register',
  match: compileTopicPattern('/sys/{productKey}/{deviceName}/thing/proxy/provisioning/product_register'),
  handle: (hctx, client, params, payload, packet) =>
    handleGatewayRequest(hctx, client, params, payload, packet, (link, p) => hctx.app.services.subDeviceRegistration.provisionByProduct(link.gateway, p)),
};

/**
 * Sub-device login and logout through the gateway (spec 4.5, 4.6):
 * `/ext/session/{gw}/combine/login|batch_login|logout|batch_logout`, answered on `_reply`.
 */
import type { AlinkResult } from '../../core/sub-device-protocol.js';
import type { GatewayLink, SubDeviceSessionService } from '../../services/sub-device-sessions.js';
import { compileTopicPattern } from './topic-pattern.js';
import { handleGatewayRequest } from './gateway-link.js';
import type { TopicHandler } from './index.js';

const OPS: Record<string, (s: SubDeviceSessionService, link: GatewayLink, params: unknown) => Promise<AlinkResult>> = {
  login: (s, l, p) => s.login(l, p),
  batch_login: (s, l, p) => s.batchLogin(l, p),
  logout: (s, l, p) => s.logout(l, p),
  batch_logout: (s, l, p) => s.batchLogout(l, p),
};

const matchCombine = compileTopicPattern('/ext/session/{productKey}/{deviceName}/combine/{op}');

export const combineSessionHandler: TopicHandler = {
  name: 'ext/session/combine/*',
  match: (topic) => {
    const p = matchCombine(topic);
    return p && Object.hasOwn(OPS, p.op!) ? p : null;
  },
  handle: (hctx, client, params, payload, packet) =>
    handleGatewayRequest(hctx, client, params, payload, packet, (link, p) => OPS[params.op!]!(hctx.app.services.subDeviceSessions, link, p)),
};

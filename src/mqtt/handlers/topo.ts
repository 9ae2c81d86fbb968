/**
 * Topology messages of a gateway (spec 4.3, 4.4): `/sys/{gw}/thing/topo/add|delete|get`,
 * answered on `_reply`. topo/add entries are signed with each sub-device's DeviceSecret.
 */
import type { LiveGateways, TopologyService } from '../../services/topology.js';
import type { DeviceRef } from '../../services/events.js';
import type { AlinkResult } from '../../core/sub-device-protocol.js';
import { compileTopicPattern } from './topic-pattern.js';
import { handleGatewayRequest } from './gateway-link.js';
import type { TopicHandler } from './index.js';

const OPS: Record<string, (t: TopologyService, gateway: DeviceRef, params: unknown, live: LiveGateways) => Promise<AlinkResult>> = {
  // `live`: topo/add must not take an activated sub-device from a gateway that is connected.
  add: (t, gw, p, live) => t.addSigned(gw, p, live),
  delete: (t, gw, p) => t.removeByGateway(gw, p),
  get: (t, gw) => t.getByGateway(gw),
};

export const topoHandler: TopicHandler = {
  name: 'thing/topo/*',
  match: (topic) => {
    const p = matchTopo(topic);
    return p && Object.hasOwn(OPS, p.op!) ? p : null;
  },
  handle: (hctx, client, params, payload, packet) =>
    handleGatewayRequest(hctx, client, params, payload, packet, (link, p) =>
      OPS[params.op!]!(hctx.app.services.topology, link.gateway, p, { isConnected: (iotId) => hctx.sessions.byIotId(iotId) !== undefined }),
    ),
};

const matchTopo = compileTopicPattern('/sys/{productKey}/{deviceName}/thing/topo/{op}');

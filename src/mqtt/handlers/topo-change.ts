/**
 * The rest of a gateway's topology conversation (spec 4.4):
 *
 * - `thing/topo/change` (down): the gateway is told when its topology changed without its
 *   asking: the operator added (status 0) or removed (1) sub-devices (management API, CLI),
 *   a sub-device moved to another gateway (1 to the old one) or was deleted (1), disabled (8)
 *   or enabled again (2). Delivered straight to the connected gateway, subscribed or not (C
 *   SDKs never SUBSCRIBE to system topics); a gateway that is not connected gets nothing
 *   queued and reads its topology with thing/topo/get after reconnecting. The gateway's own
 *   thing/topo/add|delete are not echoed (it has its reply). Its optional `_reply` is
 *   accepted by the ACL and ignored.
 *
 * - `thing/list/found` (up): the gateway reports sub-devices it discovered. Nothing is added
 *   to the topology (that stays the operator's or the gateway's topo/add decision): each entry
 *   is validated (460 malformed, 6250 unknown product, 6280 invalid DeviceName) and recorded
 *   in the audit trail as action `topology.found` (actor `gateway:{pk}/{dn}`), where an
 *   operator reads it (`GET /api/v1/audit?action=topology.found`, `thingauth audit`).
 */
import { PRODUCT_KEY_RE, isValidDeviceName } from '../../core/names.js';
import { gatewayActor } from '../../services/sub-device-audit.js';
import { SubDeviceCodes as C, foldItems, missingIdentity, requestItems, subDeviceIdentity, type AlinkResult, type ItemOutcome } from '../../core/sub-device-protocol.js';
import type { DeviceRef, RegistryEventMap } from '../../services/events.js';
import { handleGatewayRequest } from './gateway-link.js';
import { compileTopicPattern } from './topic-pattern.js';
import type { HandlerContext, TopicHandler } from './index.js';

/** `params.status` of thing/topo/change (spec 4.4). */
export const TopoChangeStatus = { CREATED: 0, DELETED: 1, ENABLED: 2, DISABLED: 8 } as const;
export type TopoChangeStatus = (typeof TopoChangeStatus)[keyof typeof TopoChangeStatus];

let noticeSeq = 0;

/** The notice as the spec shows it; the id is a string (the Node SDK calls id.split). */
export function topoChangeNotice(status: TopoChangeStatus, subs: readonly { productKey: string; deviceName: string }[]) {
  return {
    id: String(++noticeSeq),
    version: '1.0',
    method: 'thing.topo.change',
    params: { status, subList: subs.map((s) => ({ productKey: s.productKey, deviceName: s.deviceName })) },
  };
}

function notifyGateway(hctx: HandlerContext, gateway: DeviceRef, status: TopoChangeStatus, subs: readonly DeviceRef[]): void {
  if (subs.length === 0) return;
  const session = hctx.sessions.byIotId(gateway.iotId);
  if (!session) return;
  const topic = `/sys/${session.identity.productKey}/${session.identity.deviceName}/thing/topo/change`;
  hctx.replyTo(session.client, topic, topoChangeNotice(status, subs));
  hctx.logger.info({ gateway: `${gateway.productKey}/${gateway.deviceName}`, status, count: subs.length }, 'thing/topo/change sent to gateway');
}

/**
 * Sends thing/topo/change notices from the registry's events until the returned function is
 * called (the broker starts it and stops it on close).
 */
export function startTopoChangeNotices(hctx: HandlerContext): () => void {
  const { events, topology } = hctx.app.services;
  const onTopology = ({ gateway, added, removed, byGateway }: RegistryEventMap['topology.changed'][0]) => {
    if (byGateway) return;
    notifyGateway(hctx, gateway, TopoChangeStatus.CREATED, added);
    notifyGateway(hctx, gateway, TopoChangeStatus.DELETED, removed);
  };
  const onSwitch = (status: TopoChangeStatus) => (ref: DeviceRef) => {
    topology.gatewayOf(ref).then(
      (gw) => {
        if (gw) notifyGateway(hctx, { iotId: gw.iotId, productKey: gw.productKey, deviceName: gw.deviceName }, status, [ref]);
      },
      (err) => hctx.logger.warn({ err, sub: `${ref.productKey}/${ref.deviceName}` }, 'thing/topo/change not sent: gateway lookup failed'),
    );
  };
  const onDisabled = onSwitch(TopoChangeStatus.DISABLED);
  const onEnabled = onSwitch(TopoChangeStatus.ENABLED);
  events.on('topology.changed', onTopology);
  events.on('device.disabled', onDisabled);
  events.on('device.enabled', onEnabled);
  return () => {
    events.off('topology.changed', onTopology);
    events.off('device.disabled', onDisabled);
    events.off('device.enabled', onEnabled);
  };
}

/** `thing/list/found`: validate, record each entry in the audit trail, answer per item. */
async function reportFound(hctx: HandlerContext, gateway: DeviceRef, params: unknown): Promise<AlinkResult> {
  const notGateway = await hctx.app.services.topology.gatewayCheck(gateway);
  if (notGateway) return notGateway;
  const request = requestItems(params, 'params must be a non-empty list of {productKey, deviceName}');
  if ('refusal' in request) return request.refusal;
  const products = new Map<string, boolean>();
  const productExists = async (pk: string) => {
    if (!products.has(pk)) products.set(pk, PRODUCT_KEY_RE.test(pk) && (await hctx.app.store.getProduct(pk)) !== undefined);
    return products.get(pk)!;
  };
  const outcomes: ItemOutcome[] = [];
  for (const item of request.items) {
    const id = subDeviceIdentity(item);
    if (!id) outcomes.push(missingIdentity());
    else if (!(await productExists(id.productKey))) outcomes.push({ ...id, code: C.PRODUCT_NOT_FOUND, message: `product ${id.productKey} not found` });
    else if (!isValidDeviceName(id.deviceName)) outcomes.push({ ...id, code: C.BAD_DEVICE_NAME, message: 'deviceName must be 4-32 characters of A-Z a-z 0-9 - _ @ . :' });
    else outcomes.push({ ...id, code: C.SUCCESS, message: 'success' });
  }
  for (const o of outcomes) {
    hctx.app.services.audit.record({
      action: 'topology.found',
      actor: gatewayActor(gateway),
      productKey: o.productKey || null,
      deviceName: o.deviceName || null,
      result: o.code === C.SUCCESS ? 'ok' : 'deny',
      reason: o.code === C.SUCCESS ? `found by gateway ${gateway.productKey}/${gateway.deviceName}` : `${o.code} ${o.message}`,
    });
  }
  return foldItems(outcomes);
}

const matchListFound = compileTopicPattern('/sys/{productKey}/{deviceName}/thing/list/found');

export const listFoundHandler: TopicHandler = {
  name: 'thing/list/found',
  match: matchListFound,
  handle: (hctx, client, params, payload, packet) =>
    handleGatewayRequest(hctx, client, params, payload, packet, (link, p) => reportFound(hctx, link.gateway, p)),
};

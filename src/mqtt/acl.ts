/**
 * The topic ACL, written as data: each identity kind has a list of topic patterns with the
 * placeholders `{productKey}` and `{deviceName}` (substituted from the identity) and the MQTT
 * wildcards `+` / `#` (kept as wildcards). One more level form exists for rules only:
 * `+suffix` (e.g. `+_reply`) matches one level that ends with `suffix` and is longer than it.
 *
 * Semantics (issue 11 item 4):
 * - Publish: the rules of an identity are read IN ORDER and the FIRST rule whose pattern
 *   matches the topic decides: publish is allowed iff that rule grants `pub`. So a narrow
 *   `sub` rule placed before a broad `pubsub` one makes a downlink subscribe-only.
 * - Subscribe: allowed when every topic the filter can match lies inside one rule granting
 *   `sub` (so `#`, `/sys/+/...` and other devices' topics are refused; a device may still
 *   subscribe `/sys/{pk}/{dn}/#`).
 * A session is checked for its own identity and every identity it acts for (a gateway's
 * logged-in sub-devices, see sessions.ts): allowed when one of them allows it.
 *
 * Extension point: add rules to TOPIC_RULES[kind] (mind the order for publish). Rules are
 * compiled once per identity at login, not per packet.
 */
import type { IdentityKind, Session, SessionIdentity } from './sessions.js';

export type Access = 'pub' | 'sub' | 'pubsub';

export interface TopicRule {
  pattern: string;
  access: Access;
  /** Where the topic family comes from (spec section / SDK), for readers of this table. */
  why: string;
}

export const TOPIC_RULES: Record<IdentityKind, TopicRule[]> = {
  device: [
    // 1. The device's own answers to what the platform sends it: publishable, every SDK uses
    //    them (Node SDK serve()/onService: thing/service/{id}_reply, property/set_reply).
    { pattern: '/sys/{productKey}/{deviceName}/thing/service/+/+_reply', access: 'pubsub', why: 'device answers property set/get (property/set_reply, property/get_reply)' },
    { pattern: '/sys/{productKey}/{deviceName}/thing/service/+_reply', access: 'pubsub', why: 'device answers a service call: thing/service/{identifier}_reply' },
    { pattern: '/sys/{productKey}/{deviceName}/thing/model/down_raw_reply', access: 'pubsub', why: 'device answers a raw downlink' },
    { pattern: '/sys/{productKey}/{deviceName}/thing/topo/change_reply', access: 'pubsub', why: 'gateway acknowledges a topology change notice' },
    { pattern: '/sys/{productKey}/{deviceName}/thing/topo/add/notify_reply', access: 'pubsub', why: 'gateway answers a topology add notice' },
    { pattern: '/sys/{productKey}/{deviceName}/thing/config/push_reply', access: 'pubsub', why: 'device acknowledges a config push' },
    { pattern: '/sys/{productKey}/{deviceName}/thing/+_reply', access: 'pubsub', why: 'device answers thing/disable, thing/enable, thing/delete' },
    { pattern: '/sys/{productKey}/{deviceName}/rrpc/response/+', access: 'pubsub', why: 'device answers an RRPC request (spec 1.3)' },
    { pattern: '/sys/{productKey}/{deviceName}/thing/bootstrap/notify_reply', access: 'pubsub', why: "bootstrap: the device's answer to the reconnect order (docs/devices.md)" },
    // 2. What the platform publishes TO the device: subscribe-only, so nothing (retained or
    //    queued) can be planted there for the device or the next holder of its name.
    { pattern: '/sys/{productKey}/{deviceName}/thing/service/#', access: 'sub', why: 'downlink requests: property/set, property/get, thing/service/{identifier}' },
    { pattern: '/sys/{productKey}/{deviceName}/thing/model/down_raw', access: 'sub', why: 'raw downlink' },
    { pattern: '/sys/{productKey}/{deviceName}/thing/topo/change', access: 'sub', why: 'topology change notice to a gateway (spec 4.4)' },
    { pattern: '/sys/{productKey}/{deviceName}/thing/topo/add/notify', access: 'sub', why: 'topology add notice to a gateway' },
    { pattern: '/sys/{productKey}/{deviceName}/thing/config/push', access: 'sub', why: 'config push' },
    { pattern: '/sys/{productKey}/{deviceName}/thing/+', access: 'sub', why: 'thing/disable, thing/enable, thing/delete notices' },
    { pattern: '/sys/{productKey}/{deviceName}/rrpc/request/+', access: 'sub', why: 'RRPC request (spec 1.3)' },
    { pattern: '/sys/{productKey}/{deviceName}/thing/bootstrap/notify', access: 'sub', why: 'bootstrap: reconnect order (downlink, docs/devices.md)' },
    { pattern: '/sys/{productKey}/{deviceName}/thing/+/+_reply', access: 'sub', why: 'platform replies: thing/topo/add_reply, thing/sub/register_reply, thing/config/get_reply, ...' },
    { pattern: '/sys/{productKey}/{deviceName}/thing/+/+/+_reply', access: 'sub', why: 'platform replies: thing/event/property/post_reply, thing/event/{id}/post_reply, ...' },
    { pattern: '/sys/{productKey}/{deviceName}/thing/+/+/+/+_reply', access: 'sub', why: 'platform replies: thing/event/property/pack/post_reply, thing/proxy/provisioning/product_register_reply, ...' },
    // 3. Everything else of the device: its requests and uplinks.
    { pattern: '/sys/{productKey}/{deviceName}/#', access: 'pubsub', why: 'Alink uplinks: thing/event/*/post, thing/topo/*, thing/sub/register, ota (spec 1.3, 1.5)' },
    { pattern: '/{productKey}/{deviceName}/user/#', access: 'pubsub', why: 'custom topics of the device' },
    { pattern: '/{productKey}/{deviceName}/get', access: 'sub', why: 'legacy custom topic (pre-"user" products)' },
    { pattern: '/{productKey}/{deviceName}/update', access: 'pub', why: 'legacy custom topic' },
    { pattern: '/{productKey}/{deviceName}/update/error', access: 'pub', why: 'legacy custom topic' },
    { pattern: '/shadow/update/{productKey}/{deviceName}', access: 'pub', why: 'device shadow (Node SDK)' },
    { pattern: '/shadow/get/{productKey}/{deviceName}', access: 'sub', why: 'device shadow (Node SDK subscribes it)' },
    { pattern: '/ext/session/{productKey}/{deviceName}/combine/+_reply', access: 'sub', why: 'platform replies to sub-device login/logout (spec 4.5)' },
    { pattern: '/ext/session/{productKey}/{deviceName}/#', access: 'pubsub', why: 'gateway sub-device login/logout requests (spec 4.3)' },
    { pattern: '/ext/error/{productKey}/{deviceName}', access: 'sub', why: 'platform error notices (spec 4.7)' },
    { pattern: '/ext/ntp/{productKey}/{deviceName}/request', access: 'pub', why: 'NTP time sync request' },
    { pattern: '/ext/ntp/{productKey}/{deviceName}/response', access: 'sub', why: 'NTP time sync response' },
    // RRPC on /ext/rrpc: the device answers on the very topic the request came on, so both ways.
    { pattern: '/ext/rrpc/+/sys/{productKey}/{deviceName}/#', access: 'pubsub', why: 'RRPC on system topics (answer on the request topic)' },
    { pattern: '/ext/rrpc/+/{productKey}/{deviceName}/user/#', access: 'pubsub', why: 'RRPC on custom topics (answer on the request topic)' },
    { pattern: '/ota/device/upgrade/{productKey}/{deviceName}', access: 'sub', why: 'OTA firmware push' },
    { pattern: '/ota/device/inform/{productKey}/{deviceName}', access: 'pub', why: 'OTA version report' },
    { pattern: '/ota/device/progress/{productKey}/{deviceName}', access: 'pub', why: 'OTA progress' },
    { pattern: '/ota/device/request/{productKey}/{deviceName}', access: 'pub', why: 'OTA firmware query' },
  ],
  application: [
    { pattern: '/sys/{productKey}/+/#', access: 'pubsub', why: 'device data and commands of its products' },
    { pattern: '/{productKey}/+/user/#', access: 'pubsub', why: 'custom topics of its products' },
    { pattern: '/{productKey}/+/get', access: 'pub', why: 'legacy custom downlink' },
    { pattern: '/{productKey}/+/update', access: 'sub', why: 'legacy custom uplink' },
    { pattern: '/{productKey}/+/update/error', access: 'sub', why: 'legacy custom uplink' },
    { pattern: '/shadow/get/{productKey}/+', access: 'pub', why: 'shadow downlink' },
    { pattern: '/shadow/update/{productKey}/+', access: 'sub', why: 'shadow uplink' },
    { pattern: '/ext/rrpc/+/sys/{productKey}/+/#', access: 'pubsub', why: 'RRPC' },
    { pattern: '/ext/rrpc/+/{productKey}/+/user/#', access: 'pubsub', why: 'RRPC on custom topics' },
    { pattern: '/ext/error/{productKey}/+', access: 'pub', why: 'error notices to devices' },
    { pattern: '/ota/device/upgrade/{productKey}/+', access: 'pub', why: 'OTA firmware push' },
    { pattern: '/ota/device/+/{productKey}/+', access: 'sub', why: 'OTA reports' },
  ],
  provisioning: [],
};

/** A rule split into levels once; `{productKey}` / `{deviceName}` levels are bound per identity. */
interface RuleTemplate {
  levels: string[];
  pub: boolean;
  sub: boolean;
}

const PK = '{productKey}';
const DN = '{deviceName}';

function template(rule: TopicRule): RuleTemplate {
  const levels = rule.pattern.split('/');
  for (const l of levels) {
    if (l.includes('{') && l !== PK && l !== DN) throw new Error(`ACL pattern ${rule.pattern}: a placeholder must fill a whole level`);
  }
  return { levels, pub: rule.access !== 'sub', sub: rule.access !== 'pub' };
}

/** Templates per kind, rebuilt if someone appends to TOPIC_RULES after the first login. */
const templates = new Map<IdentityKind, { source: TopicRule[]; count: number; rules: RuleTemplate[] }>();

function templatesFor(kind: IdentityKind): RuleTemplate[] {
  const source = TOPIC_RULES[kind];
  const hit = templates.get(kind);
  if (hit && hit.source === source && hit.count === source.length) return hit.rules;
  const rules = source.map(template);
  templates.set(kind, { source, count: source.length, rules });
  return rules;
}

/**
 * What the ACL needs of one identity. Nothing is substituted or allocated per login: rule
 * levels holding a placeholder are compared with the identity's values while matching.
 */
export interface CompiledIdentityAcl {
  kind: IdentityKind;
  /** Devices: their ProductKey; applications: every ProductKey they are scoped to. */
  productKeys: ReadonlySet<string> | string;
  deviceName: string;
}

export function compileAclFor(identity: SessionIdentity): CompiledIdentityAcl {
  return {
    kind: identity.kind,
    productKeys: identity.kind === 'application' ? new Set(identity.productKeys ?? []) : identity.productKey,
    deviceName: identity.deviceName,
  };
}

/** A rule level `+suffix`: one level ending with `suffix` (and longer than it). */
function suffixLevelMatches(r: string, actual: string): boolean {
  return r.length > 1 && r.charCodeAt(0) === 43 /* + */ && actual.length > r.length - 1 && actual.endsWith(r.slice(1));
}

function bindLevel(r: string, acl: CompiledIdentityAcl, actual: string): boolean {
  if (r === PK) return typeof acl.productKeys === 'string' ? actual === acl.productKeys : acl.productKeys.has(actual);
  if (r === DN) return actual === acl.deviceName;
  return r === actual || suffixLevelMatches(r, actual);
}

function topicMatchesFor(rule: readonly string[], topic: readonly string[], acl: CompiledIdentityAcl): boolean {
  const n = rule.length;
  for (let i = 0; i < n; i++) {
    const r = rule[i]!;
    if (r === '#') return true;
    if (i >= topic.length) return false;
    if (r !== '+' && !bindLevel(r, acl, topic[i]!)) return false;
  }
  return n === topic.length;
}

function filterWithinFor(rule: readonly string[], filter: readonly string[], acl: CompiledIdentityAcl): boolean {
  for (let i = 0; ; i++) {
    const r = rule[i];
    if (r === '#') return true;
    if (i === filter.length) return i === rule.length;
    if (r === undefined) return false;
    const f = filter[i]!;
    if (f === '#') return false;
    if (r === '+') continue;
    if (f === '+' || !bindLevel(r, acl, f)) return false;
  }
}

/** MQTT topic matching of a concrete topic against a rule filter. */
export function topicMatches(rule: readonly string[], topic: readonly string[]): boolean {
  const n = rule.length;
  for (let i = 0; i < n; i++) {
    const r = rule[i];
    if (r === '#') return true;
    if (i >= topic.length) return false;
    if (r !== '+' && r !== topic[i]) return false;
  }
  return n === topic.length;
}

/** True when every topic `filter` can match also matches `rule`. */
export function filterWithin(rule: readonly string[], filter: readonly string[]): boolean {
  for (let i = 0; ; i++) {
    const r = rule[i];
    if (r === '#') return true;
    if (i === filter.length) return i === rule.length;
    if (i === rule.length) return false;
    const f = filter[i];
    if (f === '#') return false;
    if (r === '+') continue;
    if (f === '+' || f !== r) return false;
  }
}

/** A device template with the levels its `{productKey}` and `{deviceName}` fill. */
interface IndexedTemplate {
  rule: RuleTemplate;
  pkAt: number;
  dnAt: number;
}

let indexedCache: { rules: RuleTemplate[]; indexed: IndexedTemplate[] } | undefined;

function indexedDeviceTemplates(): IndexedTemplate[] {
  const rules = templatesFor('device');
  if (indexedCache?.rules === rules) return indexedCache.indexed;
  const indexed: IndexedTemplate[] = [];
  for (const rule of rules) {
    const pkAt = rule.levels.indexOf(PK);
    const dnAt = rule.levels.indexOf(DN);
    if (pkAt >= 0 && dnAt >= 0) indexed.push({ rule, pkAt, dnAt });
  }
  indexedCache = { rules, indexed };
  return indexed;
}

/**
 * A session's ACL map (identity IotId -> its ACL) that also keeps its device identities by
 * `productKey&deviceName`, updated on every set/delete, so a check can look up the identity a
 * topic names. sessions.ts creates every session's map as one of these.
 */
export class IdentityAclMap extends Map<string, CompiledIdentityAcl> {
  private readonly devices = new Map<string, CompiledIdentityAcl>();

  constructor(entries: Iterable<readonly [string, CompiledIdentityAcl]> = []) {
    // Entries are added after super() so the overridden set() finds `devices` initialised.
    super();
    for (const [iotId, acl] of entries) this.set(iotId, acl);
  }

  override set(iotId: string, acl: CompiledIdentityAcl): this {
    this.unindex(iotId);
    super.set(iotId, acl);
    if (acl.kind === 'device' && typeof acl.productKeys === 'string') this.devices.set(acl.productKeys + '&' + acl.deviceName, acl);
    return this;
  }

  override delete(iotId: string): boolean {
    this.unindex(iotId);
    return super.delete(iotId);
  }

  override clear(): void {
    this.devices.clear();
    super.clear();
  }

  /** The device identity of this pk/dn in the map, if any. */
  device(productKey: string, deviceName: string): CompiledIdentityAcl | undefined {
    return this.devices.get(productKey + '&' + deviceName);
  }

  private unindex(iotId: string): void {
    const old = super.get(iotId);
    if (old && typeof old.productKeys === 'string') {
      const key = old.productKeys + '&' + old.deviceName;
      if (this.devices.get(key) === old) this.devices.delete(key);
    }
  }
}

/** Below this many identities trying each one is as fast as the index. */
const INDEX_FROM_IDENTITIES = 8;

/** Publish, first match decides: the first rule of the identity that matches the topic says yes or no. */
function identityMayPublishLevels(acl: CompiledIdentityAcl, levels: string[]): boolean {
  for (const rule of templatesFor(acl.kind)) {
    if (topicMatchesFor(rule.levels, levels, acl)) return rule.pub;
  }
  return false;
}

function identityMaySubscribeLevels(acl: CompiledIdentityAcl, levels: string[]): boolean {
  for (const rule of templatesFor(acl.kind)) {
    if (rule.sub && filterWithinFor(rule.levels, levels, acl)) return true;
  }
  return false;
}

function identityAllows(acl: CompiledIdentityAcl, levels: string[], mode: 'pub' | 'sub'): boolean {
  return mode === 'pub' ? identityMayPublishLevels(acl, levels) : identityMaySubscribeLevels(acl, levels);
}

/**
 * A gateway acts for up to 1,500 sub-devices: trying every identity against every rule made
 * each check O(sub-devices), and logging 1,500 sub-devices in (8 auto-subscriptions each)
 * quadratic. A device rule names its identity in the topic itself, so look that one up and
 * check it against its whole rule list (publish is first-match per identity).
 * Only ever says yes; a no falls through to the full scan below, which stays the reference.
 */
function indexedDeviceMatch(acls: IdentityAclMap, levels: string[], mode: 'pub' | 'sub'): boolean {
  let tried: CompiledIdentityAcl | undefined;
  for (const { pkAt, dnAt } of indexedDeviceTemplates()) {
    const pk = levels[pkAt];
    const dn = levels[dnAt];
    if (pk === undefined || dn === undefined) continue;
    const acl = acls.device(pk, dn);
    if (!acl || acl === tried) continue;
    tried = acl;
    if (identityAllows(acl, levels, mode)) return true;
  }
  return false;
}

function anyIdentity(session: Session, levels: string[], mode: 'pub' | 'sub'): boolean {
  const acls = session.acl;
  if (acls.size >= INDEX_FROM_IDENTITIES && acls instanceof IdentityAclMap && indexedDeviceMatch(acls, levels, mode)) return true;
  for (const acl of session.acl.values()) {
    if (identityAllows(acl, levels, mode)) return true;
  }
  return false;
}

export function mayPublish(session: Session, topic: string): boolean {
  return anyIdentity(session, topic.split('/'), 'pub');
}

export function maySubscribe(session: Session, filter: string): boolean {
  if (filter.startsWith('$')) return false;
  return anyIdentity(session, filter.split('/'), 'sub');
}

/** The publish check for an identity without a live session (the HTTP device channel). */
export function identityMayPublish(identity: SessionIdentity, topic: string): boolean {
  return identityMayPublishLevels(compileAclFor(identity), topic.split('/'));
}

/**
 * One MQTT connection of the core: byte stream -> size scan -> mqtt-packet parser -> session
 * state machine; writer with the client's Maximum Packet Size and topic aliases.
 * MQTT 3.1 (protocol level 3), 3.1.1 (4) and 5.0 (5) natively.
 */
import type { Duplex } from 'node:stream';
import mqttPacket from 'mqtt-packet';
import type {
  IConnectPacket,
  IDisconnectPacket,
  IPublishPacket,
  ISubscribePacket,
  IUnsubscribePacket,
  Packet,
  QoS,
} from 'mqtt-packet';
import type { CoreBroker } from './broker.js';
import { newScanState, scanChunk, type ScanState } from './packet-scan.js';
import { RC, v3ConnackCode } from './reason-codes.js';
import type { OutgoingMessage, Session } from './session.js';
import { isSharedFilter, validTopicFilter, validTopicName } from './topics.js';
import { NEVER_EXPIRES, type CoreClient, type CoreMessage } from './types.js';

type State = 'connecting' | 'authenticating' | 'connected' | 'closed';

let assignedCounter = 0;

export class CoreConnection implements CoreClient {
  clientId?: string;
  protocolVersion: 3 | 4 | 5 = 4;
  username?: string;
  private state: State = 'connecting';
  /** Present only while a packet is partly received: an idle connection holds no parser (memory per held connection). */
  private parser?: ReturnType<typeof mqttPacket.parser>;
  private readonly scan: ScanState = newScanState();
  private timer?: NodeJS.Timeout;
  private session?: Session;
  private will?: CoreMessage;
  private willDelay = 0;
  /** Client's limits (v5 CONNECT properties). */
  private clientReceiveMax = 65535;
  private clientMaxPacket = 0;
  private clientAliasMax = 0;
  private aliasesIn?: Map<number, string>;
  private aliasesOut?: Map<string, number>;
  private gracefulDisconnect = false;
  private takenOver = false;
  /** Incoming packets waiting while an async hook runs (order is kept). */
  private backlog?: Packet[];
  private busy = false;

  constructor(
    private readonly broker: CoreBroker,
    private readonly stream: Duplex,
    readonly remoteAddress: string,
  ) {
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('error', () => this.stream.destroy());
    stream.on('close', () => this.onClose());
    this.timer = setTimeout(() => this.stream.destroy(), broker.options.connectTimeoutMs);
  }

  get id(): string {
    return this.clientId ?? '';
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    const limit = this.state === 'connected' ? this.broker.options.maxPacketSize : this.broker.options.maxConnectPacketSize;
    const verdict = scanChunk(this.scan, chunk, limit);
    if (verdict === 'too_large') return this.protocolError(RC.PACKET_TOO_LARGE);
    if (verdict === 'malformed') return this.protocolError(RC.MALFORMED);
    if (this.state === 'connected' && this.timer) this.timer.refresh();
    const parser = (this.parser ??= this.newParser());
    parser.parse(chunk);
    // The chunk ended at a packet boundary: nothing is buffered, drop the parser until more bytes come.
    if (this.scan.header === 0 && this.scan.skip === 0 && this.parser === parser) {
      parser.removeAllListeners();
      this.parser = undefined;
    }
  }

  private newParser(): ReturnType<typeof mqttPacket.parser> {
    // Before CONNECT the version is unknown (the CONNECT carries it); after it, packets are parsed with it.
    const parser = mqttPacket.parser(this.state === 'connecting' ? {} : { protocolVersion: this.protocolVersion });
    parser.on('packet', (p: Packet) => this.onPacket(p));
    parser.on('error', () => this.protocolError(RC.MALFORMED));
    return parser;
  }

  private onPacket(p: Packet): void {
    if (this.state === 'closed') return;
    if (this.busy) {
      (this.backlog ??= []).push(p);
      return;
    }
    if (this.state === 'connecting') {
      if (p.cmd !== 'connect') return this.destroyNow();
      this.state = 'authenticating';
      // Later packets (possibly in the same chunk) are parsed with this connection's version.
      if (p.protocolVersion === 3 || p.protocolVersion === 4 || p.protocolVersion === 5) this.protocolVersion = p.protocolVersion;
      if (this.parser) (this.parser as unknown as { settings: { protocolVersion?: number } }).settings.protocolVersion = p.protocolVersion;
      this.busy = true;
      this.onConnect(p).then(
        () => this.resume(),
        () => this.destroyNow(),
      );
      return;
    }
    if (this.state === 'authenticating') return;
    switch (p.cmd) {
      case 'publish':
        return this.onPublish(p);
      case 'puback':
        return this.ack(p.messageId, 'puback');
      case 'pubrec':
        return this.onPubrec(p.messageId!);
      case 'pubcomp':
        return this.ack(p.messageId, 'pubcomp');
      case 'pubrel': {
        const known = this.session!.incomingQos2.delete(p.messageId!);
        return this.send({ cmd: 'pubcomp', messageId: p.messageId, reasonCode: known ? 0 : RC.PACKET_ID_NOT_FOUND } as Packet);
      }
      case 'subscribe':
        return this.runAsync(this.onSubscribe(p));
      case 'unsubscribe':
        return this.onUnsubscribe(p);
      case 'pingreq':
        return this.send({ cmd: 'pingresp' });
      case 'disconnect':
        return this.onDisconnect(p);
      default:
        return this.protocolError(RC.PROTOCOL_ERROR);
    }
  }

  /** Runs an async step, holding later packets until it is done so order is kept. */
  private runAsync(step: Promise<void>): void {
    this.busy = true;
    step.then(
      () => this.resume(),
      () => this.destroyNow(),
    );
  }

  private resume(): void {
    this.busy = false;
    while (!this.busy && this.backlog && this.backlog.length > 0 && this.state !== 'closed') {
      const p = this.backlog.shift()!;
      this.onPacket(p);
    }
  }

  // ---- CONNECT ----------------------------------------------------------------------------

  private async onConnect(p: IConnectPacket): Promise<void> {
    const o = this.broker.options;
    const v = p.protocolVersion;
    if (v !== 3 && v !== 4 && v !== 5) return this.refuse(RC.UNSUPPORTED_PROTOCOL_VERSION);
    this.protocolVersion = v;
    this.username = p.username;
    const props = p.properties ?? {};
    let clientId = p.clientId ?? '';
    let assigned = false;
    if (clientId.length === 0) {
      if (v === 3 || (v === 4 && !p.clean)) return this.refuse(RC.CLIENT_ID_NOT_VALID);
      clientId = `auto-${process.pid.toString(36)}-${Date.now().toString(36)}-${(assignedCounter++).toString(36)}`;
      assigned = v === 5;
    }
    if (v === 3 && clientId.length > 23) return this.refuse(RC.CLIENT_ID_NOT_VALID);
    this.clientId = clientId;
    if (p.will && !validTopicName(p.will.topic)) return this.refuse(RC.TOPIC_NAME_INVALID);
    if (o.authenticate) {
      const verdict = await o.authenticate(this, p);
      if (this.state === 'closed') return;
      if (!verdict.ok) return this.refuse(verdict.reasonCode, verdict.reasonString);
    }
    if (v === 5) {
      if (props.receiveMaximum !== undefined) this.clientReceiveMax = props.receiveMaximum;
      if (props.maximumPacketSize !== undefined) this.clientMaxPacket = props.maximumPacketSize;
      if (props.topicAliasMaximum !== undefined) this.clientAliasMax = props.topicAliasMaximum;
    }
    if (p.will) {
      const wp = p.will.properties ?? {};
      this.will = {
        topic: p.will.topic,
        payload: Buffer.from(p.will.payload ?? Buffer.alloc(0)),
        qos: (p.will.qos ?? 0) as QoS,
        retain: !!p.will.retain,
        origin: clientId,
        ...publishProps(wp),
      };
      this.willDelay = v === 5 ? (wp.willDelayInterval ?? 0) : 0;
    }
    // Takeover: the new connection wins.
    const existing = this.broker.clients.get(clientId);
    if (existing && existing !== this) existing.takeOver();
    this.broker.clients.set(clientId, this);

    let session = this.broker.store.get(clientId);
    let sessionPresent = false;
    if (session && p.clean) {
      this.broker.endSession(session);
      session = undefined;
    }
    if (session) {
      sessionPresent = true;
      if (session.expiryTimer) clearTimeout(session.expiryTimer);
      session.expiryTimer = undefined;
      if (session.willTimer) {
        // Reconnected within the Will Delay: the will is not sent.
        clearTimeout(session.willTimer);
        session.willTimer = undefined;
        session.pendingWill = undefined;
      }
    } else session = this.broker.store.create(clientId);
    const requestedExpiry = v === 5 ? (props.sessionExpiryInterval ?? 0) : p.clean ? 0 : NEVER_EXPIRES;
    session.expiryInterval = Math.min(requestedExpiry, o.maxSessionExpiry);
    this.session = session;

    let keepalive = p.keepalive ?? 0;
    let serverKeepAlive = o.serverKeepAlive;
    if (serverKeepAlive === undefined && o.maxKeepAlive !== undefined && (keepalive === 0 || keepalive > o.maxKeepAlive)) {
      serverKeepAlive = o.maxKeepAlive;
    }
    if (serverKeepAlive !== undefined) keepalive = serverKeepAlive;
    if (v === 5) {
      this.aliasesIn = new Map();
      const ackProps: Record<string, unknown> = {
        receiveMaximum: o.receiveMaximum,
        topicAliasMaximum: o.topicAliasMaximum,
        maximumPacketSize: o.maxPacketSize,
        retainAvailable: true,
        wildcardSubscriptionAvailable: true,
        subscriptionIdentifiersAvailable: true,
        sharedSubscriptionAvailable: false,
      };
      if (assigned) ackProps.assignedClientIdentifier = clientId;
      if (serverKeepAlive !== undefined) ackProps.serverKeepAlive = serverKeepAlive;
      if (session.expiryInterval !== requestedExpiry) ackProps.sessionExpiryInterval = session.expiryInterval;
      this.send({ cmd: 'connack', returnCode: 0, reasonCode: 0, sessionPresent, properties: ackProps } as Packet);
    } else {
      this.send({ cmd: 'connack', returnCode: 0, sessionPresent } as Packet);
    }
    this.state = 'connected';
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (keepalive > 0) {
      this.timer = setTimeout(() => this.protocolError(RC.KEEP_ALIVE_TIMEOUT), keepalive * 1500);
    }
    if (sessionPresent) this.resend();
  }

  private refuse(reasonCode: number, reasonString?: string): void {
    if (this.protocolVersion === 5) {
      const properties = reasonString ? { reasonString } : undefined;
      this.send({ cmd: 'connack', reasonCode, sessionPresent: false, properties } as Packet);
    } else {
      this.send({ cmd: 'connack', returnCode: v3ConnackCode(reasonCode), sessionPresent: false } as Packet);
    }
    this.clientId = undefined;
    this.endSoon();
  }

  // ---- PUBLISH in ------------------------------------------------------------------------

  private onPublish(p: IPublishPacket): void {
    const v5 = this.protocolVersion === 5;
    let topic = p.topic;
    const props = p.properties ?? {};
    if (v5 && props.topicAlias !== undefined) {
      const alias = props.topicAlias;
      if (alias === 0 || alias > this.broker.options.topicAliasMaximum) return this.protocolError(RC.TOPIC_ALIAS_INVALID);
      if (topic.length > 0) this.aliasesIn!.set(alias, topic);
      else {
        const known = this.aliasesIn!.get(alias);
        if (known === undefined) return this.protocolError(RC.PROTOCOL_ERROR);
        topic = known;
      }
    }
    if (!validTopicName(topic)) return this.protocolError(v5 ? RC.TOPIC_NAME_INVALID : RC.PROTOCOL_ERROR);
    if (p.qos === 2 && !this.session!.incomingQos2.has(p.messageId!)) {
      if (this.session!.incomingQos2.size >= this.broker.options.receiveMaximum) return this.protocolError(RC.RECEIVE_MAXIMUM_EXCEEDED);
    }
    if (p.qos === 2 && this.session!.incomingQos2.has(p.messageId!)) {
      // A retransmission of a QoS 2 message already routed: acknowledge only.
      return this.send({ cmd: 'pubrec', messageId: p.messageId } as Packet);
    }
    const message: CoreMessage = {
      topic,
      payload: Buffer.isBuffer(p.payload) ? p.payload : Buffer.from(p.payload),
      qos: p.qos,
      retain: p.retain,
      origin: this.clientId,
      ...publishProps(props),
    };
    const authorize = this.broker.options.authorizePublish;
    if (!authorize) return this.routeIn(p, message, RC.SUCCESS);
    const packet = topic === p.topic ? p : { ...p, topic };
    this.runAsync(
      authorize(this, packet).then((verdict) => {
        if (this.state === 'closed') return;
        if (verdict.ok) return this.routeIn(p, message, RC.SUCCESS);
        if (!v5) return this.protocolError(RC.NOT_AUTHORIZED);
        this.ackIn(p, verdict.reasonCode);
      }),
    );
  }

  private routeIn(p: IPublishPacket, message: CoreMessage, code: number): void {
    if (p.qos === 2) this.session!.incomingQos2.add(p.messageId!);
    this.broker.publish(message, this);
    this.ackIn(p, code);
  }

  private ackIn(p: IPublishPacket, reasonCode: number): void {
    if (p.qos === 1) this.send({ cmd: 'puback', messageId: p.messageId, reasonCode } as Packet);
    else if (p.qos === 2) this.send({ cmd: 'pubrec', messageId: p.messageId, reasonCode } as Packet);
  }

  // ---- PUBLISH out -----------------------------------------------------------------------

  /** Delivers a routed message to this client at `qos` (called by the broker). */
  deliver(message: CoreMessage, qos: QoS, retain: boolean, subscriptionIds?: number[]): void {
    if (this.state !== 'connected') {
      if (qos > 0 && this.session) this.enqueue({ message, qos, retain, subscriptionIds, state: 'publish' });
      return;
    }
    if (qos === 0) {
      if (this.stream.writableLength > this.broker.options.maxWriteBuffer) return; // slow consumer: QoS 0 dropped
      this.writePublish({ message, qos, retain, subscriptionIds, state: 'publish' }, 0, false);
      return;
    }
    const s = this.session!;
    if (s.inflight.size >= this.clientReceiveMax || s.queue.length > 0) {
      this.enqueue({ message, qos, retain, subscriptionIds, state: 'publish' });
      return;
    }
    this.startInflight({ message, qos, retain, subscriptionIds, state: 'publish' });
  }

  private enqueue(m: OutgoingMessage): void {
    const s = this.session!;
    if (s.queue.length >= this.broker.options.maxQueuedMessages) {
      // Backpressure: a consumer that cannot keep up is disconnected, memory stays bounded.
      this.protocolError(RC.QUOTA_EXCEEDED);
      return;
    }
    s.queue.push(m);
  }

  private startInflight(m: OutgoingMessage): void {
    const id = this.session!.allocatePacketId();
    if (id === undefined) return this.enqueue(m);
    this.session!.inflight.set(id, m);
    this.writePublish(m, id, false);
  }

  /** Moves queued messages into flight while the client's Receive Maximum allows. */
  private pump(): void {
    const s = this.session!;
    const now = Date.now();
    while (this.state === 'connected' && s.queue.length > 0 && s.inflight.size < this.clientReceiveMax) {
      const m = s.queue.shift()!;
      if (m.message.expiresAt !== undefined && m.message.expiresAt <= now) continue;
      this.startInflight(m);
    }
  }

  /** Session resumed: retransmit unacknowledged PUBLISH (DUP) and PUBREL, then the queue. */
  private resend(): void {
    const s = this.session!;
    for (const [id, m] of s.inflight) {
      if (m.state === 'pubrel') this.send({ cmd: 'pubrel', messageId: id } as Packet);
      else this.writePublish(m, id, true);
    }
    this.pump();
  }

  private writePublish(m: OutgoingMessage, messageId: number, dup: boolean): void {
    const msg = m.message;
    const packet: Record<string, unknown> = {
      cmd: 'publish',
      topic: msg.topic,
      payload: msg.payload,
      qos: m.qos,
      retain: m.retain,
      dup,
    };
    if (m.qos > 0) packet.messageId = messageId;
    if (this.protocolVersion === 5) {
      const props: Record<string, unknown> = {};
      if (msg.payloadFormatIndicator !== undefined) props.payloadFormatIndicator = msg.payloadFormatIndicator;
      if (msg.contentType !== undefined) props.contentType = msg.contentType;
      if (msg.responseTopic !== undefined) props.responseTopic = msg.responseTopic;
      if (msg.correlationData !== undefined) props.correlationData = msg.correlationData;
      if (msg.userProperties !== undefined) props.userProperties = msg.userProperties;
      if (msg.expiresAt !== undefined) {
        const left = Math.ceil((msg.expiresAt - Date.now()) / 1000);
        if (left <= 0) {
          if (m.qos > 0) this.session!.inflight.delete(messageId);
          return;
        }
        props.messageExpiryInterval = left;
      }
      if (m.subscriptionIds) props.subscriptionIdentifier = m.subscriptionIds.length === 1 ? m.subscriptionIds[0] : m.subscriptionIds;
      if (this.clientAliasMax > 0 && !dup) {
        const out = (this.aliasesOut ??= new Map());
        const alias = out.get(msg.topic);
        if (alias !== undefined) {
          props.topicAlias = alias;
          packet.topic = '';
        } else if (out.size < this.clientAliasMax) {
          const next = out.size + 1;
          out.set(msg.topic, next);
          props.topicAlias = next;
        }
      }
      packet.properties = props;
    }
    const buf = this.generate(packet as unknown as Packet);
    if (!buf) return;
    if (this.clientMaxPacket > 0 && buf.length > this.clientMaxPacket) {
      // Larger than the client accepts: discarded as if delivered (MQTT 5 §3.1.2.11.4).
      if (m.qos > 0) this.session!.inflight.delete(messageId);
      if (packet.topic !== '' && (packet.properties as { topicAlias?: number } | undefined)?.topicAlias !== undefined) {
        this.aliasesOut!.delete(msg.topic);
      }
      return;
    }
    this.stream.write(buf);
  }

  private ack(messageId: number | undefined, kind: 'puback' | 'pubcomp'): void {
    const s = this.session!;
    const m = messageId === undefined ? undefined : s.inflight.get(messageId);
    if (m && (kind === 'puback' ? m.state === 'publish' && m.qos === 1 : m.state === 'pubrel')) {
      s.inflight.delete(messageId!);
      this.pump();
    }
  }

  private onPubrec(messageId: number): void {
    const m = this.session!.inflight.get(messageId);
    if (!m || m.qos !== 2) {
      this.send({ cmd: 'pubrel', messageId, reasonCode: RC.PACKET_ID_NOT_FOUND } as Packet);
      return;
    }
    m.state = 'pubrel';
    this.send({ cmd: 'pubrel', messageId } as Packet);
  }

  // ---- SUBSCRIBE / UNSUBSCRIBE -------------------------------------------------------------

  private async onSubscribe(p: ISubscribePacket): Promise<void> {
    const v5 = this.protocolVersion === 5;
    const granted: number[] = [];
    const subscriptionId = v5 ? (p.properties?.subscriptionIdentifier as number | undefined) : undefined;
    const retainedToSend: { filter: string; qos: QoS; rap: boolean; ids?: number[] }[] = [];
    const authorize = this.broker.options.authorizeSubscribe;
    for (const s of p.subscriptions) {
      if (!validTopicFilter(s.topic)) {
        granted.push(v5 ? RC.TOPIC_FILTER_INVALID : 0x80);
        continue;
      }
      if (isSharedFilter(s.topic)) {
        granted.push(v5 ? RC.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED : 0x80);
        continue;
      }
      if (authorize) {
        const verdict = await authorize(this, s);
        if (this.state === 'closed') return;
        if (!verdict.ok) {
          granted.push(v5 ? verdict.reasonCode : 0x80);
          continue;
        }
      }
      const qos = Math.min(s.qos, 2) as QoS;
      const isNew = this.broker.addSubscription(this.session!, {
        clientId: this.clientId!,
        filter: s.topic,
        qos,
        noLocal: v5 && !!s.nl,
        retainAsPublished: v5 && !!s.rap,
        retainHandling: (v5 ? (s.rh ?? 0) : 0) as 0 | 1 | 2,
        subscriptionId,
      });
      granted.push(qos);
      const rh = v5 ? (s.rh ?? 0) : 0;
      if (rh === 0 || (rh === 1 && isNew)) retainedToSend.push({ filter: s.topic, qos, rap: true, ids: subscriptionId !== undefined ? [subscriptionId] : undefined });
    }
    this.send({ cmd: 'suback', messageId: p.messageId, granted, reasonCode: 0 } as unknown as Packet);
    for (const r of retainedToSend) {
      for (const m of this.broker.retainedFor(r.filter)) this.deliver(m, Math.min(m.qos, r.qos) as QoS, true, r.ids);
    }
  }

  private onUnsubscribe(p: IUnsubscribePacket): void {
    const codes: number[] = [];
    for (const filter of p.unsubscriptions) {
      const had = this.broker.removeSubscription(this.session!, filter);
      codes.push(had ? RC.SUCCESS : RC.NO_SUBSCRIPTION_EXISTED);
    }
    if (this.protocolVersion === 5) this.send({ cmd: 'unsuback', messageId: p.messageId, granted: codes } as unknown as Packet);
    else this.send({ cmd: 'unsuback', messageId: p.messageId } as Packet);
  }

  // ---- DISCONNECT / close ----------------------------------------------------------------

  private onDisconnect(p: IDisconnectPacket): void {
    const v5 = this.protocolVersion === 5;
    const code = v5 ? (p.reasonCode ?? 0) : 0;
    const newExpiry = v5 ? p.properties?.sessionExpiryInterval : undefined;
    if (newExpiry !== undefined) {
      if (this.session!.expiryInterval === 0 && newExpiry !== 0) return this.protocolError(RC.PROTOCOL_ERROR);
      this.session!.expiryInterval = Math.min(newExpiry, this.broker.options.maxSessionExpiry);
    }
    this.gracefulDisconnect = code !== RC.DISCONNECT_WITH_WILL;
    this.stream.end();
    this.stream.destroy();
  }

  /** Another connection took this client id. */
  takeOver(): void {
    if (this.state === 'closed') return;
    this.takenOver = true;
    if (this.protocolVersion === 5 && this.state === 'connected') this.send({ cmd: 'disconnect', reasonCode: RC.SESSION_TAKEN_OVER } as Packet);
    this.stream.end();
    this.finish();
    this.stream.destroy();
  }

  private onClose(): void {
    this.finish();
    this.broker.forget(this);
  }

  /** Leaves the session (will, expiry); runs once. */
  private finish(): void {
    if (this.state === 'closed') return;
    const wasConnected = this.state === 'connected';
    this.state = 'closed';
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.parser?.removeAllListeners('packet');
    if (!wasConnected || !this.session) return;
    const session = this.session;
    if (this.broker.clients.get(this.clientId!) === this) this.broker.clients.delete(this.clientId!);
    const will = this.gracefulDisconnect ? undefined : this.will;
    if (will) {
      const delay = Math.min(this.willDelay, session.expiryInterval);
      if (delay > 0 && !this.takenOver) {
        session.pendingWill = will;
        session.willTimer = setTimeout(() => {
          session.willTimer = undefined;
          session.pendingWill = undefined;
          this.broker.publish(will);
        }, delay * 1000);
        session.willTimer.unref();
      } else this.broker.publish(will);
    }
    if (!this.takenOver) this.broker.scheduleExpiry(session);
  }

  private protocolError(reasonCode: number): void {
    if (this.state === 'closed') return;
    if (this.protocolVersion === 5 && this.state === 'connected') this.send({ cmd: 'disconnect', reasonCode } as Packet);
    this.endSoon();
  }

  /** Flush what was written (a CONNACK, a DISCONNECT), then close. */
  private endSoon(): void {
    this.stream.end();
    const t = setTimeout(() => this.stream.destroy(), 1000);
    t.unref();
    this.finish();
  }

  private destroyNow(): void {
    this.finish();
    this.stream.destroy();
  }

  destroy(): Promise<void> {
    return new Promise((resolve) => {
      if (this.stream.destroyed) return resolve();
      this.stream.once('close', () => resolve());
      this.stream.destroy();
    });
  }

  private generate(packet: Packet): Buffer | undefined {
    try {
      return mqttPacket.generate(packet, { protocolVersion: this.protocolVersion });
    } catch {
      return undefined;
    }
  }

  private send(packet: Packet): void {
    if (this.stream.destroyed || this.stream.writableEnded) return;
    const buf = this.generate(packet);
    if (buf) this.stream.write(buf);
  }
}

/** v5 PUBLISH / will properties that travel with the message. */
function publishProps(props: Record<string, unknown>): Partial<CoreMessage> {
  const out: Partial<CoreMessage> = {};
  if (props.payloadFormatIndicator !== undefined) out.payloadFormatIndicator = props.payloadFormatIndicator as boolean;
  if (props.contentType !== undefined) out.contentType = props.contentType as string;
  if (props.responseTopic !== undefined) out.responseTopic = props.responseTopic as string;
  if (props.correlationData !== undefined) out.correlationData = props.correlationData as Buffer;
  if (props.userProperties !== undefined) out.userProperties = props.userProperties as CoreMessage['userProperties'];
  if (typeof props.messageExpiryInterval === 'number') out.expiresAt = Date.now() + props.messageExpiryInterval * 1000;
  return out;
}

/**
 * The subscription index: topic filter -> subscriber entries, matched with qlobber using MQTT
 * wildcards. '$'-topics are not matched by filters starting with a wildcard (MQTT §4.7.2).
 */
import qlobber from 'qlobber';
import type { QoS } from 'mqtt-packet';

export interface Subscription {
  clientId: string;
  filter: string;
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId?: number;
}

export class SubscriptionIndex {
  private readonly q = new qlobber.Qlobber<Subscription>({ separator: '/', wildcard_one: '+', wildcard_some: '#' });

  add(sub: Subscription): void {
    this.q.add(sub.filter, sub);
  }

  remove(sub: Subscription): void {
    this.q.remove(sub.filter, sub);
  }

  /** Every subscription matching `topic`, grouped by client id. */
  match(topic: string): Map<string, Subscription[]> {
    const out = new Map<string, Subscription[]>();
    const dollar = topic.charCodeAt(0) === 0x24;
    for (const s of this.q.match(topic)) {
      if (dollar && (s.filter.charCodeAt(0) === 0x2b || s.filter.charCodeAt(0) === 0x23)) continue;
      const list = out.get(s.clientId);
      if (list) list.push(s);
      else out.set(s.clientId, [s]);
    }
    return out;
  }
}

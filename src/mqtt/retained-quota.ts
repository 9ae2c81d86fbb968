/**
 * Retained messages, bounded (issue 11 item 4).
 *
 * What the platform offers: the cloud's MQTT 3.1.1 devices get no retained messages; this
 * server accepts the retain flag (MQTT 3.1.1 and 5 clients, and applications, use it for
 * "last known value" topics) but holds only a bounded number of them, in memory, like the
 * rest of the broker's state:
 * - per identity (the device or application that published it: a gateway's publish for a
 *   logged-in sub-device counts against the sub-device): at most `perIdentity` topics and
 *   `bytesPerIdentity` bytes;
 * - in total: at most `total` topics and `bytesTotal` bytes.
 * A retained publish beyond a cap is refused (MQTT 3.1.1: the connection closes, as for
 * every refused publish; MQTT 5: DISCONNECT 0x97 Quota exceeded, or 0x9A Retain not
 * supported when `perIdentity` is 0). Replacing one's own retained message on the same topic
 * is charged the difference; an empty retained payload deletes it (MQTT 3.3.1.3) and is
 * always accepted. A device's retained messages (those it published, and any on topics that
 * name it) are removed when it is deleted or reset.
 *
 * Bytes counted = topic + payload, so many empty-ish messages are bounded too.
 */
export interface RetainedLimits {
  perIdentity: number;
  bytesPerIdentity: number;
  total: number;
  bytesTotal: number;
}

export type RetainedAdmission = { ok: true } | { ok: false; reason: string; retainUnsupported: boolean };

interface Held {
  owner: string;
  bytes: number;
}

interface OwnerUsage {
  bytes: number;
  topics: Set<string>;
}

export class RetainedQuota {
  private readonly byTopic = new Map<string, Held>();
  private readonly byOwner = new Map<string, OwnerUsage>();
  private totalBytes = 0;

  constructor(private readonly limits: RetainedLimits) {}

  get size(): number {
    return this.byTopic.size;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  /**
   * Decides a retained publish of `owner` on `topic` and, when accepted, books it (the
   * broker stores it next). An empty payload deletes the topic's retained message.
   */
  admit(owner: string, topic: string, payloadBytes: number): RetainedAdmission {
    if (payloadBytes === 0) {
      this.release(topic);
      return { ok: true };
    }
    if (this.limits.perIdentity === 0) return { ok: false, reason: 'retained messages are not supported here', retainUnsupported: true };
    const bytes = Buffer.byteLength(topic) + payloadBytes;
    const prev = this.byTopic.get(topic);
    const usage = this.byOwner.get(owner);
    const ownCount = (usage?.topics.size ?? 0) + (prev?.owner === owner ? 0 : 1);
    const ownBytes = (usage?.bytes ?? 0) + bytes - (prev?.owner === owner ? prev.bytes : 0);
    const allCount = this.byTopic.size + (prev ? 0 : 1);
    const allBytes = this.totalBytes + bytes - (prev?.bytes ?? 0);
    if (ownCount > this.limits.perIdentity) return this.quota(`at most ${this.limits.perIdentity} retained messages per device or application`);
    if (ownBytes > this.limits.bytesPerIdentity) return this.quota(`at most ${this.limits.bytesPerIdentity} retained bytes per device or application`);
    if (allCount > this.limits.total) return this.quota('the server holds its maximum number of retained messages');
    if (allBytes > this.limits.bytesTotal) return this.quota('the server holds its maximum of retained bytes');
    this.release(topic);
    this.byTopic.set(topic, { owner, bytes });
    const u = this.byOwner.get(owner) ?? { bytes: 0, topics: new Set<string>() };
    u.bytes += bytes;
    u.topics.add(topic);
    this.byOwner.set(owner, u);
    this.totalBytes += bytes;
    return { ok: true };
  }

  /** Forgets the retained message of a topic (it was deleted from the store). */
  release(topic: string): void {
    const held = this.byTopic.get(topic);
    if (!held) return;
    this.byTopic.delete(topic);
    this.totalBytes -= held.bytes;
    const u = this.byOwner.get(held.owner);
    if (!u) return;
    u.bytes -= held.bytes;
    u.topics.delete(topic);
    if (u.topics.size === 0) this.byOwner.delete(held.owner);
  }

  /**
   * The topics whose retained message belongs to a device: published by it (`owner` = its
   * IotId), or on a topic naming it (`.../{productKey}/{deviceName}/...`, e.g. planted by an
   * application before the device was deleted).
   */
  topicsOfDevice(owner: string, productKey: string, deviceName: string): string[] {
    const out = new Set(this.byOwner.get(owner)?.topics ?? []);
    for (const topic of this.byTopic.keys()) {
      const levels = topic.split('/');
      for (let i = 0; i + 1 < levels.length; i++) {
        if (levels[i] === productKey && levels[i + 1] === deviceName) {
          out.add(topic);
          break;
        }
      }
    }
    return [...out];
  }

  private quota(reason: string): RetainedAdmission {
    return { ok: false, reason, retainUnsupported: false };
  }
}

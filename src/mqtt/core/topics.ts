/**
 * MQTT topic names and filters: validation and matching (MQTT 3.1.1 §4.7, 5.0 §4.7).
 * Pure functions; the subscription index (subscriptions.ts) uses qlobber for the fan-out and
 * these for checks and for the retained-message scan.
 */

/** A topic name a client may PUBLISH to: non-empty, no wildcards, no NUL. */
export function validTopicName(topic: string): boolean {
  if (topic.length === 0) return false;
  for (let i = 0; i < topic.length; i++) {
    const c = topic.charCodeAt(i);
    if (c === 0x23 /* # */ || c === 0x2b /* + */ || c === 0) return false;
  }
  return true;
}

/** A topic filter: '#' only as the whole last level, '+' only as a whole level, no NUL. */
export function validTopicFilter(filter: string): boolean {
  if (filter.length === 0 || filter.includes('\u0000')) return false;
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!;
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) return false;
    if (l.includes('+') && l !== '+') return false;
  }
  return true;
}

/** Does `filter` match `topic`? '$'-topics are not matched by a leading wildcard (§4.7.2). */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const fl = f[i]!;
    if (fl === '#') return true;
    if (i >= t.length) return false;
    if (fl !== '+' && fl !== t[i]) return false;
  }
  return f.length === t.length;
}

/** '$share/{group}/{filter}' subscriptions (MQTT 5 shared subscriptions). */
export function isSharedFilter(filter: string): boolean {
  return filter.startsWith('$share/');
}

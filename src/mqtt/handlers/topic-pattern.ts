/**
 * Topic patterns for handlers: `/sys/{productKey}/{deviceName}/thing/event/{eventId}/post`
 * compiles to a matcher returning the named levels, or null. Compiled once at load.
 */
export type TopicParams = Record<string, string>;

export function compileTopicPattern(pattern: string): (topic: string) => TopicParams | null {
  const levels = pattern.split('/');
  const names = levels.map((l) => (l.startsWith('{') && l.endsWith('}') ? l.slice(1, -1) : null));
  // A cheap pre-check on the literal prefix avoids splitting unrelated topics.
  const firstVar = names.findIndex((n) => n !== null);
  const prefix = (firstVar < 0 ? levels : levels.slice(0, firstVar)).join('/');
  const count = levels.length;
  return (topic: string) => {
    if (!topic.startsWith(prefix)) return null;
    const parts = topic.split('/');
    if (parts.length !== count) return null;
    const params: TopicParams = {};
    for (let i = 0; i < count; i++) {
      const name = names[i];
      if (name === null) {
        if (parts[i] !== levels[i]) return null;
      } else {
        if (parts[i] === '') return null;
        params[name!] = parts[i]!;
      }
    }
    return params;
  };
}

/**
 * The live feed: GET /api/v1/events/stream read with fetch() and a streaming reader, so the
 * token goes in the Authorization header (EventSource cannot send headers, and a token in a
 * URL ends up in logs and history). Parses Server-Sent Events (event:, data:, comments) and
 * hands each event to its subscribers; reconnects with a growing pause; a 401 ends the session
 * (api.ts). No polling anywhere: pages update from these events.
 */
import { authorizedFetch } from './api';
import { observable } from './store';

export interface DeviceStatusEvent {
  productKey: string;
  deviceName: string;
  iotId: string;
  status: 'UNACTIVE' | 'ONLINE' | 'OFFLINE' | 'DISABLE';
  at: string;
}
export interface DeviceChangedEvent extends Partial<DeviceStatusEvent> {
  productKey: string;
  deviceName: string;
  change: string;
}
export interface StatsEvent {
  connectsPerMinute: number;
  refusalsPerMinute: number;
  online: number;
}
export interface LiveEvents {
  'device.status': DeviceStatusEvent;
  'device.changed': DeviceChangedEvent;
  stats: StatsEvent;
  /** Events may have been missed (the server dropped some for a slow reader, or the stream was down): pages refetch. */
  resync: { reason: 'dropped' | 'reconnected' };
}

export type LiveState = 'off' | 'connecting' | 'live' | 'unavailable';
export const liveState = observable<LiveState>('off');
export const lastStats = observable<StatsEvent | undefined>(undefined);

type Handler<K extends keyof LiveEvents> = (data: LiveEvents[K]) => void;
const handlers: { [K in keyof LiveEvents]: Set<Handler<K>> } = {
  'device.status': new Set(),
  'device.changed': new Set(),
  stats: new Set(),
  resync: new Set(),
};

export function onLive<K extends keyof LiveEvents>(type: K, fn: Handler<K>): () => void {
  const set = handlers[type] as Set<Handler<K>>;
  set.add(fn);
  return () => set.delete(fn);
}

/**
 * The last status event seen per device (bounded). A page that fetched a device just before
 * the server wrote its new state (writes are batched) corrects the record with it.
 */
const lastStatus = new Map<string, DeviceStatusEvent>();
const MAX_REMEMBERED = 5000;

export function withLiveStatus<D extends { productKey: string; deviceName: string; status: string; lastOnlineAt: string | null }>(d: D): D {
  const ev = lastStatus.get(`${d.productKey}\u0000${d.deviceName}`);
  // Disabled outranks presence; otherwise the stream's latest word on online/offline holds.
  if (!ev || d.status === 'DISABLE' || d.status === ev.status) return d;
  return { ...d, status: ev.status, ...(ev.status === 'ONLINE' ? { lastOnlineAt: ev.at } : {}) };
}

function remember(ev: DeviceStatusEvent): void {
  const k = `${ev.productKey}\u0000${ev.deviceName}`;
  lastStatus.delete(k);
  lastStatus.set(k, ev);
  if (lastStatus.size > MAX_REMEMBERED) lastStatus.delete(lastStatus.keys().next().value!);
}

function resync(reason: 'dropped' | 'reconnected'): void {
  lastStatus.clear();
  for (const fn of [...handlers.resync]) fn({ reason });
}

function dispatch(type: string, data: string): void {
  if (type === 'dropped') return resync('dropped');
  if (!(type in handlers) || type === 'resync') return;
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return;
  }
  if (type === 'stats') lastStats.set(parsed as StatsEvent);
  if (type === 'device.status') remember(parsed as DeviceStatusEvent);
  for (const fn of [...(handlers[type as keyof LiveEvents] as Set<(d: unknown) => void>)]) fn(parsed);
}

/** Feeds text chunks in, calls `emit` for each complete event (SSE framing, WHATWG spec). */
export function sseParser(emit: (event: string, data: string) => void): (chunk: string) => void {
  let buf = '';
  let event = '';
  let data: string[] = [];
  return (chunk) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (data.length > 0) emit(event || 'message', data.join('\n'));
        event = '';
        data = [];
        continue;
      }
      if (line.startsWith(':')) continue; // comment (": ping")
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
  };
}

let controller: AbortController | undefined;

export function startLive(): void {
  stopLive();
  const ac = new AbortController();
  controller = ac;
  void run(ac.signal);
}

export function stopLive(): void {
  controller?.abort();
  lastStatus.clear();
  controller = undefined;
  liveState.set('off');
}

async function run(signal: AbortSignal): Promise<void> {
  let pause = 1000;
  let connectedBefore = false;
  while (!signal.aborted) {
    liveState.set('connecting');
    try {
      const res = await authorizedFetch('/api/v1/events/stream', { signal, headers: { accept: 'text/event-stream' } });
      if (!res.ok || !res.body) {
        liveState.set('unavailable');
        if (res.status === 404 || res.status === 403) return; // no stream on this server / not allowed
      } else {
        liveState.set('live');
        pause = 1000;
        if (connectedBefore) resync('reconnected');
        connectedBefore = true;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        const feed = sseParser(dispatch);
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          feed(value);
        }
      }
    } catch {
      if (signal.aborted) return;
    }
    if (signal.aborted) return;
    liveState.set('connecting');
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(pause * 2, 15000);
  }
}

/**
 * The Alink JSON envelope (spec 0.3), leniently: requests may lack version/method, carry
 * `params` as the string "{}", or ask for no reply with `sys.ack = 0`. Replies always carry
 * id (echoed with its JSON type), code, data and message.
 */
export interface AlinkRequest {
  /** Echoed exactly; string or number as sent. */
  id: unknown;
  method?: unknown;
  version?: unknown;
  params: unknown;
  /** False when the device asked for no reply (`sys.ack === 0`). */
  wantsReply: boolean;
}

export interface AlinkReply {
  id: unknown;
  code: number;
  data: unknown;
  message: string;
}

export function parseAlinkRequest(payload: Buffer | string): AlinkRequest | undefined {
  let body: unknown;
  try {
    body = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
  } catch {
    return undefined;
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return undefined;
  const o = body as Record<string, unknown>;
  let params = o.params;
  if (typeof params === 'string') {
    try {
      params = JSON.parse(params);
    } catch {
      /* keep the string: some handlers do not need params */
    }
  }
  const sys = o.sys as Record<string, unknown> | undefined;
  const ack = sys && typeof sys === 'object' ? sys.ack : undefined;
  return { id: o.id, method: o.method, version: o.version, params, wantsReply: !(ack === 0 || ack === '0') };
}

export function alinkReply(id: unknown, code: number, data: unknown = {}, message = code === 200 ? 'success' : 'error'): AlinkReply {
  return { id: id ?? '', code, data, message };
}

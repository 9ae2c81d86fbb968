/**
 * One table of error kinds for every edge. Each kind has an HTTP status for the
 * management API and, where the device protocol has one, the platform's reply code.
 */
export const ErrorKinds = {
  INVALID_ARGUMENT: { http: 400, alink: 460 },
  UNAUTHENTICATED: { http: 401, alink: 401 },
  FORBIDDEN: { http: 403, alink: 403 },
  PRODUCT_NOT_FOUND: { http: 404, alink: 6250 },
  DEVICE_NOT_FOUND: { http: 404, alink: 6100 },
  NOT_FOUND: { http: 404, alink: 404 },
  DEVICE_NAME_TAKEN: { http: 409, alink: 6203 },
  PRODUCT_KEY_TAKEN: { http: 409, alink: 409 },
  CONFLICT: { http: 409, alink: 409 },
  PRODUCT_HAS_DEVICES: { http: 409, alink: 409 },
  DEVICE_LIMIT_REACHED: { http: 422, alink: 6606 },
  SUB_DEVICE_LIMIT_REACHED: { http: 422, alink: 6400 },
  DYNAMIC_REGISTRATION_OFF: { http: 403, alink: 6288 },
  DEVICE_ALREADY_ACTIVATED: { http: 409, alink: 6289 },
  /** All regnwl slots of a DeviceName are activated (spec 3.2: at most 5 physical devices). */
  REGNWL_SLOTS_FULL: { http: 409, alink: 6289 },
  UNSUPPORTED_SIGN_METHOD: { http: 400, alink: 6292 },
  BAD_SIGNATURE: { http: 401, alink: 6600 },
  DEVICE_DISABLED: { http: 403, alink: 6204 },
  /** A sub-device bound to a gateway (topology or gateway registration): spec 4.1's 6619. */
  SUB_DEVICE_BOUND: { http: 409, alink: 6619 },
  RATE_LIMITED: { http: 429, alink: 429 },
  PAYLOAD_TOO_LARGE: { http: 413, alink: 460 },
  INTERNAL: { http: 500, alink: 500 },
  /** The registry database cannot be reached (PostgreSQL down or unreachable): retry later. */
  UNAVAILABLE: { http: 503, alink: 500 },
} as const;

export type ErrorKind = keyof typeof ErrorKinds;

export class ThingAuthError extends Error {
  readonly kind: ErrorKind;
  /** Optional details a caller may show (never secrets). */
  readonly details?: Record<string, unknown>;
  constructor(kind: ErrorKind, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'ThingAuthError';
    this.kind = kind;
    this.details = details;
  }
  get httpStatus(): number {
    return ErrorKinds[this.kind].http;
  }
  get alinkCode(): number {
    return ErrorKinds[this.kind].alink;
  }
}

export function isThingAuthError(e: unknown): e is ThingAuthError {
  return e instanceof ThingAuthError;
}

/**
 * The per-product replay window (Product.timestampWindowSeconds): a login that carries a
 * timestamp must be close to the server clock. Devices send milliseconds (Node SDK, docs) or
 * seconds (Python linkkit); a value of 10^11 or more is read as milliseconds (10^11 s is
 * beyond the year 5000, 10^11 ms is 1973). Pure: the clock is passed in.
 */

const MS_THRESHOLD = 1e11;

/** undefined = within the window; otherwise the refusal reason (never echoes more than 20 characters). */
export function timestampOutsideWindow(timestamp: string | undefined, windowSeconds: number, nowMs: number): string | undefined {
  if (timestamp === undefined) return undefined;
  if (!/^\d{1,16}$/.test(timestamp)) return `timestamp outside window: "${timestamp.slice(0, 20)}" is not a time in ms or s`;
  const n = Number(timestamp);
  const ms = n >= MS_THRESHOLD ? n : n * 1000;
  const skewS = Math.abs(ms - nowMs) / 1000;
  if (skewS > windowSeconds) return `timestamp outside window: ${Math.round(skewS)} s from the server clock (window ${windowSeconds} s)`;
  return undefined;
}

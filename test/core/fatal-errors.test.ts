/**
 * Which uncaught errors end `thingauth serve` (src/cli/fatal-errors.ts): every one, except a
 * Redis command failure ioredis raised while Redis was unreachable and a library let escape.
 * The errors here are ioredis' own, produced by a real client against a port nobody listens on.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { isEscapedRedisCommandError } from '../../src/cli/fatal-errors.js';
import { freePort } from '../../bench/lib/private-redis.js';

test("ioredis' own command failures are not fatal; anything else is", async () => {
  const port = await freePort();
  const offline = new Redis({ port, host: '127.0.0.1', lazyConnect: true, enableOfflineQueue: false, retryStrategy: () => null });
  offline.on('error', () => undefined);
  const notWritable = await offline.get('k').then(() => undefined, (e: Error) => e);
  assert.ok(notWritable, 'a command on a closed client fails');
  assert.equal(isEscapedRedisCommandError(notWritable), true, notWritable!.message);
  offline.disconnect();

  const queued = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0, retryStrategy: (n) => (n > 2 ? null : 10) });
  queued.on('error', () => undefined);
  const maxRetries = await queued.get('k').then(() => undefined, (e: Error) => e);
  assert.ok(maxRetries);
  assert.equal(isEscapedRedisCommandError(maxRetries), true, `${maxRetries!.name}: ${maxRetries!.message}`);
  queued.disconnect();

  assert.equal(isEscapedRedisCommandError(new Error('Command timed out')), false, 'the same words from elsewhere stay fatal');
  assert.equal(isEscapedRedisCommandError(new TypeError('x is not a function')), false);
  assert.equal(isEscapedRedisCommandError('Command timed out'), false);
});

/**
 * `thing/event/property/post` and `thing/event/{eventId}/post`: the platform acknowledges on
 * the matching `_reply` topic so SDK callbacks fire (Node `postProps`, C `aiot_dm_send`).
 * The message itself still reaches subscribers (applications) through the broker.
 */
import { alinkReply, parseAlinkRequest } from './alink.js';
import { compileTopicPattern } from './topic-pattern.js';
import type { TopicHandler } from './index.js';

const match = compileTopicPattern('/sys/{productKey}/{deviceName}/thing/event/{eventId}/post');

export const thingEventPostHandler: TopicHandler = {
  name: 'thing/event/post',
  match,
  handle(hctx, client, _params, payload, packet) {
    const req = parseAlinkRequest(payload);
    if (!req) {
      // Not an Alink request at all: say so (460, as for the gateway topics) rather than stay silent.
      hctx.replyTo(client, packet.topic + '_reply', alinkReply(null, 460, {}, 'payload must be a JSON object {id, params}'));
      return;
    }
    if (!req.wantsReply) return;
    hctx.replyTo(client, packet.topic + '_reply', alinkReply(req.id, 200, {}, 'success'));
  },
};

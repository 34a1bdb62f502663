// @google-cloud/pubsub, unmodified: publishes one message to a topic and receives it from a
// subscription (streaming pull, the client's only way to receive), with the credentials
// Application Default Credentials find (GOOGLE_APPLICATION_CREDENTIALS: an external_account file),
// and prints one JSON object: the message id and the message received, or each error as the
// client surfaces it (gRPC status code and details).
// Usage: node pubsub.mjs '{"options": {<PubSub options>}, "topic": "orders", "subscription": "orders-sub",
//                          "data": "..."}'
import {PubSub} from '@google-cloud/pubsub';

const {options, topic, subscription, data} = JSON.parse(process.argv[2]);
const pubsub = new PubSub(options);
const error = (e) => ({code: e.code, details: e.details, message: e.message, reason: e.reason ?? null});
const out = {};
try {
  out.published = await pubsub.topic(topic).publishMessage({data: Buffer.from(data), attributes: {origin: 'node'}});
} catch (e) {
  out.published = {error: error(e)};
}
out.received = await new Promise((resolve) => {
  const sub = pubsub.subscription(subscription, {streamingOptions: {maxStreams: 1}});
  const done = (result) => { clearTimeout(timer); sub.removeAllListeners(); sub.close().then(() => resolve(result)); };
  const timer = setTimeout(() => done({timedOut: true}), 30000);
  sub.on('message', (m) => { m.ack(); done({id: m.id, data: m.data.toString('utf8'), attributes: m.attributes}); });
  sub.on('error', (e) => done({error: error(e)}));
});
await pubsub.close();
console.log(JSON.stringify(out));

// A small kafkajs client for the black-box tests. kafkajs 2.2 speaks
// ListOffsets v3 and Fetch v11. Every command is bounded by a deadline and
// exits non-zero with the client's error.
//
//   node kafkajs_client.js produce   BOOTSTRAP TOPIC COUNT        prints one offset per line
//   node kafkajs_client.js consume   BOOTSTRAP TOPIC GROUP COUNT  group consume from the beginning, commit; prints "offset value"
//   node kafkajs_client.js offsets   BOOTSTRAP TOPIC              prints "oldest N newest M"
//   node kafkajs_client.js committed BOOTSTRAP TOPIC GROUP        prints the group's committed offset
'use strict';

const { Kafka, logLevel } = require('kafkajs');

const DEADLINE_MS = 45000;

function kafka(bootstrap) {
  return new Kafka({
    clientId: 'runnel-kafkajs-test',
    brokers: [bootstrap],
    connectionTimeout: 10000,
    requestTimeout: 15000,
    retry: { retries: 3 },
    logLevel: logLevel.WARN,
  });
}

async function produce(bootstrap, topic, count) {
  const producer = kafka(bootstrap).producer();
  await producer.connect();
  try {
    for (let i = 0; i < count; i++) {
      const [result] = await producer.send({ topic, acks: -1, messages: [{ key: `k${i}`, value: `j${i}`, partition: 0 }] });
      console.log(result.baseOffset);
    }
  } finally {
    await producer.disconnect();
  }
}

async function consume(bootstrap, topic, groupId, count) {
  const consumer = kafka(bootstrap).consumer({ groupId, sessionTimeout: 30000, rebalanceTimeout: 30000 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const lines = [];
  await new Promise((resolve, reject) => {
    consumer.on(consumer.events.CRASH, (event) => reject(event.payload.error));
    consumer
      .run({
        autoCommit: false,
        eachMessage: async ({ partition, message }) => {
          if (lines.length >= count) return;
          lines.push(`${message.offset} ${message.value.toString()}`);
          if (lines.length === count) {
            const next = (BigInt(message.offset) + 1n).toString();
            await consumer.commitOffsets([{ topic, partition, offset: next }]);
            resolve();
          }
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
  for (const line of lines) console.log(line);
}

async function offsets(bootstrap, topic) {
  const admin = kafka(bootstrap).admin();
  await admin.connect();
  try {
    const [partition] = await admin.fetchTopicOffsets(topic);
    console.log(`oldest ${partition.low} newest ${partition.high}`);
  } finally {
    await admin.disconnect();
  }
}

async function committed(bootstrap, topic, groupId) {
  const admin = kafka(bootstrap).admin();
  await admin.connect();
  try {
    const [result] = await admin.fetchOffsets({ groupId, topics: [topic] });
    const partition = result.partitions.find((p) => p.partition === 0);
    console.log(partition ? partition.offset : 'none');
  } finally {
    await admin.disconnect();
  }
}

async function main(args) {
  const [command, bootstrap, topic, ...rest] = args;
  if (command === 'produce' && rest.length === 1) return produce(bootstrap, topic, Number(rest[0]));
  if (command === 'consume' && rest.length === 2) return consume(bootstrap, topic, rest[0], Number(rest[1]));
  if (command === 'offsets' && rest.length === 0) return offsets(bootstrap, topic);
  if (command === 'committed' && rest.length === 1) return committed(bootstrap, topic, rest[0]);
  throw new Error('usage: produce|consume|offsets|committed BOOTSTRAP TOPIC [GROUP] [COUNT]');
}

const timer = setTimeout(() => {
  console.error(`kafkajs-client: no result within ${DEADLINE_MS} ms`);
  process.exit(1);
}, DEADLINE_MS);

main(process.argv.slice(2)).then(
  () => {
    clearTimeout(timer);
    process.exit(0);
  },
  (err) => {
    console.error(`kafkajs-client: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  },
);

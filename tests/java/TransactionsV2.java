import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Consume-transform-produce with the Java client's transactional producer:
 * four transactions (commit, abort, commit, commit), each reading ten input
 * records, writing them to two output partitions and committing the input
 * offsets with sendOffsetsToTransaction. Against a broker that finalizes
 * transaction.version 2 the client speaks transactions v2 (no
 * AddPartitionsToTxn / AddOffsetsToTxn, EndTxn v5); the caller checks the
 * epoch bumps. A read_committed reader must see each input once, and the
 * group's committed offset must be the end of the input.
 * Usage: TransactionsV2 BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID
 */
public class TransactionsV2 {
    static final int PER_TXN = 10;
    static final int INPUT = 30;

    static void fail(String why) {
        System.out.println("FAIL: " + why);
        System.exit(1);
    }

    static Properties consumerProps(String bootstrap, String group, String isolation) {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        if (group != null) props.put("group.id", group);
        props.put("isolation.level", isolation);
        props.put("enable.auto.commit", "false");
        props.put("auto.offset.reset", "earliest");
        props.put("key.deserializer", StringDeserializer.class.getName());
        props.put("value.deserializer", StringDeserializer.class.getName());
        return props;
    }

    static List<String> readAll(String bootstrap, String topic, String isolation, int expected) {
        List<String> values = new ArrayList<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(bootstrap, null, isolation))) {
            List<TopicPartition> tps = List.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1));
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            long deadline = System.currentTimeMillis() + 30_000;
            long idleSince = System.currentTimeMillis();
            while (System.currentTimeMillis() < deadline && System.currentTimeMillis() - idleSince < 3_000 && values.size() < expected) {
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(200))) {
                    values.add(record.value());
                    idleSince = System.currentTimeMillis();
                }
            }
            long extraUntil = System.currentTimeMillis() + 1_000;
            while (System.currentTimeMillis() < extraUntil) {
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(200))) {
                    values.add(record.value());
                }
            }
        }
        return values;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], input = args[1], output = args[2], group = args[3], transactionalId = args[4];
        Properties plain = new Properties();
        plain.put("bootstrap.servers", bootstrap);
        plain.put("key.serializer", StringSerializer.class.getName());
        plain.put("value.serializer", StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(plain)) {
            for (int i = 0; i < INPUT; i++) producer.send(new ProducerRecord<>(input, 0, "k" + i, "in-" + i));
            producer.flush();
        }

        Properties txnProps = new Properties();
        txnProps.putAll(plain);
        txnProps.put("transactional.id", transactionalId);
        txnProps.put("max.block.ms", "30000");
        KafkaProducer<String, String> producer = new KafkaProducer<>(txnProps);
        producer.initTransactions();
        TopicPartition in = new TopicPartition(input, 0);
        KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(bootstrap, group, "read_committed"));
        consumer.assign(Collections.singletonList(in));
        consumer.seekToBeginning(Collections.singletonList(in));
        boolean[] commits = {true, false, true, true};
        long position = 0;
        for (boolean commit : commits) {
            List<ConsumerRecord<String, String>> batch = new ArrayList<>();
            long deadline = System.currentTimeMillis() + 30_000;
            while (batch.size() < PER_TXN && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(200))) {
                    if (batch.size() < PER_TXN) batch.add(record);
                }
            }
            if (batch.size() < PER_TXN) fail("read " + batch.size() + " input records, expected " + PER_TXN);
            long next = batch.get(batch.size() - 1).offset() + 1;
            producer.beginTransaction();
            for (ConsumerRecord<String, String> record : batch) {
                int partition = (int) (record.offset() % 2);
                producer.send(new ProducerRecord<>(output, partition, record.key(), record.value().replace("in-", "out-")));
            }
            producer.sendOffsetsToTransaction(Map.of(in, new OffsetAndMetadata(next)), consumer.groupMetadata());
            if (commit) {
                producer.commitTransaction();
                position = next;
                System.out.println("committed up to " + next);
            } else {
                producer.flush();
                producer.abortTransaction();
                System.out.println("aborted up to " + next);
            }
            consumer.seek(in, position);
        }
        producer.close();
        consumer.close();

        List<String> committed = readAll(bootstrap, output, "read_committed", INPUT);
        Set<String> expected = new HashSet<>();
        for (int i = 0; i < INPUT; i++) expected.add("out-" + i);
        if (committed.size() != INPUT || !new HashSet<>(committed).equals(expected)) {
            fail("read_committed saw " + committed.size() + " records, expected each of " + INPUT + " once: " + committed);
        }
        List<String> everything = readAll(bootstrap, output, "read_uncommitted", INPUT + PER_TXN);
        if (everything.size() != INPUT + PER_TXN) {
            fail("read_uncommitted saw " + everything.size() + " records, expected " + (INPUT + PER_TXN));
        }
        try (KafkaConsumer<String, String> check = new KafkaConsumer<>(consumerProps(bootstrap, group, "read_committed"))) {
            OffsetAndMetadata offset = check.committed(Collections.singleton(in), Duration.ofSeconds(30)).get(in);
            if (offset == null || offset.offset() != INPUT) fail("the group's committed offset is " + offset + ", expected " + INPUT);
        }
        System.out.println("PASS: read_committed saw each of the " + INPUT + " inputs once; the group committed " + INPUT);
    }
}

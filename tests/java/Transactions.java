import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java client's transactional producer and read_committed consumer:
 * a committed and an aborted transaction, then a zombie producer fenced by a
 * successor with the same transactional.id. A read_committed consumer must
 * see exactly the committed records; a read_uncommitted one sees all.
 * Usage: Transactions BOOTSTRAP TOPIC
 */
public class Transactions {
    static KafkaProducer<String, String> producer(String bootstrap, String transactionalId) {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("transactional.id", transactionalId);
        props.put("max.block.ms", "30000");
        props.put("key.serializer", StringSerializer.class.getName());
        props.put("value.serializer", StringSerializer.class.getName());
        KafkaProducer<String, String> producer = new KafkaProducer<>(props);
        producer.initTransactions();
        return producer;
    }

    static List<String> readAll(String bootstrap, String topic, String isolation, int expected) {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("isolation.level", isolation);
        props.put("enable.auto.commit", "false");
        props.put("key.deserializer", StringDeserializer.class.getName());
        props.put("value.deserializer", StringDeserializer.class.getName());
        List<String> values = new ArrayList<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            TopicPartition tp = new TopicPartition(topic, 0);
            consumer.assign(Collections.singletonList(tp));
            consumer.seekToBeginning(Collections.singletonList(tp));
            long deadline = System.currentTimeMillis() + 30_000;
            long idleSince = System.currentTimeMillis();
            while (System.currentTimeMillis() < deadline && System.currentTimeMillis() - idleSince < 3_000 && values.size() < expected) {
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(200))) {
                    values.add(record.value());
                    idleSince = System.currentTimeMillis();
                }
            }
            // Past the expected count, anything more would be a wrong extra record.
            long extraUntil = System.currentTimeMillis() + 1_000;
            while (System.currentTimeMillis() < extraUntil) {
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(200))) {
                    values.add(record.value());
                }
            }
        }
        return values;
    }

    static void fail(String why) {
        System.out.println("FAIL: " + why);
        System.exit(1);
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        String transactionalId = "java-txn-" + topic;
        List<String> expected = new ArrayList<>();
        KafkaProducer<String, String> producer = producer(bootstrap, transactionalId);
        producer.beginTransaction();
        for (int i = 0; i < 50; i++) {
            producer.send(new ProducerRecord<>(topic, 0, "k" + i, "committed-" + i));
            expected.add("committed-" + i);
        }
        producer.commitTransaction();
        producer.beginTransaction();
        for (int i = 0; i < 50; i++) {
            producer.send(new ProducerRecord<>(topic, 0, "k" + i, "aborted-" + i));
        }
        producer.flush();
        producer.abortTransaction();

        // The zombie: its transaction is open when a successor takes over the id.
        producer.beginTransaction();
        producer.send(new ProducerRecord<>(topic, 0, "z", "zombie"));
        producer.flush();
        KafkaProducer<String, String> successor = producer(bootstrap, transactionalId);
        try {
            producer.commitTransaction();
            fail("the zombie committed after a successor initialized the same transactional.id");
        } catch (KafkaException e) {
            String name = e.getClass().getSimpleName();
            if (!name.contains("Fenced") && !name.contains("InvalidProducerEpoch")) {
                fail("the zombie's commit failed with " + e + ", not as fenced");
            }
            System.out.println("zombie fenced: " + e);
        }
        producer.close(Duration.ZERO);
        successor.beginTransaction();
        for (int i = 0; i < 10; i++) {
            successor.send(new ProducerRecord<>(topic, 0, "s" + i, "successor-" + i));
            expected.add("successor-" + i);
        }
        successor.commitTransaction();
        successor.close();

        List<String> committed = readAll(bootstrap, topic, "read_committed", expected.size());
        if (!committed.equals(expected)) {
            fail("read_committed saw " + committed.size() + " records, expected " + expected.size() + ": " + committed);
        }
        List<String> everything = readAll(bootstrap, topic, "read_uncommitted", 111);
        if (everything.size() != 111 || !everything.contains("zombie") || !everything.contains("aborted-7")) {
            fail("read_uncommitted saw " + everything.size() + " records, expected 111");
        }
        System.out.println("PASS: read_committed saw exactly the " + expected.size() + " committed records");
    }
}

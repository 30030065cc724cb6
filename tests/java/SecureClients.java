import java.io.FileInputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.errors.AuthenticationException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The official Java client with the security settings of a properties file
 * (SASL_SSL + SCRAM, mTLS, OAUTHBEARER, ...): Admin lists the topic, the
 * producer writes COUNT records, a consumer group reads them back and
 * commits. Prints PASS, or exits non-zero.
 * Usage: SecureClients BOOTSTRAP TOPIC COUNT CLIENT_PROPERTIES [expect-auth-failure]
 * With expect-auth-failure the producer must fail with an
 * AuthenticationException (printed as REFUSED <class>: <message>).
 */
public class SecureClients {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        int count = Integer.parseInt(args[2]);
        Properties security = new Properties();
        try (FileInputStream in = new FileInputStream(args[3])) {
            security.load(in);
        }
        boolean expectFailure = args.length > 4 && args[4].equals("expect-auth-failure");

        Properties common = new Properties();
        common.putAll(security);
        common.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, bootstrap);

        if (expectFailure) {
            Properties producerProps = producerProps(common);
            producerProps.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "10000");
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps)) {
                producer.send(new ProducerRecord<>(topic, "k", "never")).get();
                fail("the producer was served");
            } catch (ExecutionException e) {
                refused(e.getCause());
            } catch (AuthenticationException e) {
                refused(e);
            }
            return;
        }

        try (Admin admin = Admin.create(common)) {
            if (!admin.listTopics().names().get().contains(topic)) {
                fail("topic " + topic + " not listed");
            }
        }
        List<String> sent = new ArrayList<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps(common))) {
            for (int i = 0; i < count; i++) {
                String value = "secure-" + i;
                sent.add(value);
                producer.send(new ProducerRecord<>(topic, "key", value)).get();
            }
        }
        Properties consumerProps = new Properties();
        consumerProps.putAll(common);
        consumerProps.put(ConsumerConfig.GROUP_ID_CONFIG, "secure-" + topic);
        consumerProps.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        consumerProps.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        consumerProps.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        consumerProps.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        List<String> received = new ArrayList<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps)) {
            consumer.subscribe(Collections.singletonList(topic));
            long deadline = System.currentTimeMillis() + 60_000;
            while (received.size() < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(500))) {
                    received.add(record.value());
                }
            }
            consumer.commitSync();
        }
        if (!received.equals(sent)) {
            fail("read " + received.size() + " records, not the " + sent.size() + " written in order");
        }
        System.out.println("PASS " + count + " records over " + security.getProperty("security.protocol"));
    }

    static Properties producerProps(Properties common) {
        Properties props = new Properties();
        props.putAll(common);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return props;
    }

    static void refused(Throwable e) {
        if (e instanceof AuthenticationException) {
            System.out.println("REFUSED " + e.getClass().getSimpleName() + ": " + e.getMessage());
        } else {
            fail("expected an AuthenticationException, got " + e);
        }
    }

    static void fail(String why) {
        System.out.println("FAIL " + why);
        System.exit(1);
    }
}

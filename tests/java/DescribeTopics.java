// The Java admin client's describeTopics against Runnel. kafka-clients 4.x
// sends DescribeTopicPartitions (KIP-966) when the broker advertises it, and
// pages through the partitions with a cursor when a response limit is set.
// Usage: DescribeTopics <bootstrap> <topic> <partitions> <missing-topic>
import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;

public class DescribeTopics {
    static void check(boolean ok, String what) {
        if (!ok) {
            System.out.println("FAIL: " + what);
            System.exit(1);
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], missing = args[3];
        int partitions = Integer.parseInt(args[2]);
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        try (Admin admin = Admin.create(props)) {
            CreateTopicsResult created = admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1)));
            Uuid createdId = created.topicId(topic).get(30, TimeUnit.SECONDS);
            Collection<Node> nodes = admin.describeCluster().nodes().get(30, TimeUnit.SECONDS);
            check(nodes.size() == 1, "one broker expected, got " + nodes);
            int node = nodes.iterator().next().id();

            // Two partitions per response: the client must follow the cursor.
            DescribeTopicsOptions paged = new DescribeTopicsOptions().partitionSizeLimitPerResponse(2).includeAuthorizedOperations(true);
            TopicDescription d = admin.describeTopics(List.of(topic), paged).allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
            check(d != null, "no description of " + topic);
            check(d.name().equals(topic), "name " + d.name());
            check(d.topicId().equals(createdId), "topic id " + d.topicId() + " differs from the created " + createdId);
            check(!d.isInternal(), "a user topic is internal");
            check(d.partitions().size() == partitions, "partitions: " + d.partitions());
            for (int i = 0; i < partitions; i++) {
                TopicPartitionInfo p = d.partitions().get(i);
                check(p.partition() == i, "partition order: " + d.partitions());
                check(p.leader() != null && p.leader().id() == node, "leader of " + i + ": " + p.leader());
                check(p.replicas().size() == 1 && p.replicas().get(0).id() == node, "replicas of " + i + ": " + p.replicas());
                check(p.isr().size() == 1 && p.isr().get(0).id() == node, "isr of " + i + ": " + p.isr());
                check(p.elr() != null && p.elr().isEmpty(), "elr of " + i + ": " + p.elr());
            }
            Set<AclOperation> ops = d.authorizedOperations();
            check(ops != null && ops.contains(AclOperation.DESCRIBE) && ops.contains(AclOperation.WRITE), "authorized operations: " + ops);

            try {
                admin.describeTopics(List.of(missing)).allTopicNames().get(30, TimeUnit.SECONDS);
                check(false, "describing a missing topic succeeded");
            } catch (ExecutionException e) {
                check(e.getCause() instanceof UnknownTopicOrPartitionException, "missing topic: " + e.getCause());
            }
        }
        System.out.println("PASS");
    }
}

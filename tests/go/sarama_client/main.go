// A small sarama (Go) client for the black-box tests, pinned to Kafka 1.0's
// protocol versions (ListOffsets v2, Fetch v6, JoinGroup v2, OffsetCommit v3):
// the versions older clients still speak. Every command is bounded by a
// deadline and exits non-zero with the client's error.
//
//	sarama-client produce   BOOTSTRAP TOPIC COUNT         prints one offset per line
//	sarama-client consume   BOOTSTRAP TOPIC COUNT         from the oldest offset, prints values
//	sarama-client group     BOOTSTRAP TOPIC GROUP COUNT   group consume and commit, prints values
//	sarama-client offsets   BOOTSTRAP TOPIC               prints "oldest N newest M"
//	sarama-client committed BOOTSTRAP TOPIC GROUP         prints the group's committed offset
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

const deadline = 45 * time.Second

func config() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V1_0_0_0
	c.ClientID = "runnel-sarama-test"
	c.Net.DialTimeout = 10 * time.Second
	c.Net.ReadTimeout = 15 * time.Second
	c.Net.WriteTimeout = 10 * time.Second
	c.Metadata.Retry.Max = 3
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Partitioner = sarama.NewManualPartitioner
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.AutoCommit.Enable = false
	return c
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sarama-client: "+format+"\n", args...)
	os.Exit(1)
}

func count(arg string) int {
	n, err := strconv.Atoi(arg)
	if err != nil || n < 0 {
		fail("bad count %q", arg)
	}
	return n
}

func produce(bootstrap, topic string, n int) {
	producer, err := sarama.NewSyncProducer([]string{bootstrap}, config())
	if err != nil {
		fail("producer: %v", err)
	}
	defer producer.Close()
	for i := 0; i < n; i++ {
		msg := &sarama.ProducerMessage{Topic: topic, Partition: 0, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i)), Value: sarama.StringEncoder(fmt.Sprintf("s%d", i))}
		_, offset, err := producer.SendMessage(msg)
		if err != nil {
			fail("produce record %d: %v", i, err)
		}
		fmt.Println(offset)
	}
}

func consume(bootstrap, topic string, n int) {
	consumer, err := sarama.NewConsumer([]string{bootstrap}, config())
	if err != nil {
		fail("consumer: %v", err)
	}
	defer consumer.Close()
	partition, err := consumer.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		fail("consume partition: %v", err)
	}
	defer partition.Close()
	timeout := time.After(deadline)
	for i := 0; i < n; i++ {
		select {
		case msg := <-partition.Messages():
			fmt.Printf("%d %s\n", msg.Offset, msg.Value)
		case err := <-partition.Errors():
			fail("consume: %v", err)
		case <-timeout:
			fail("only %d of %d records within %v", i, n, deadline)
		}
	}
}

// groupHandler prints up to `want` records, marks them consumed, commits, and stops.
type groupHandler struct {
	want   int
	got    int
	mu     sync.Mutex
	cancel context.CancelFunc
}

func (h *groupHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *groupHandler) ConsumeClaim(session sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for msg := range claim.Messages() {
		h.mu.Lock()
		fmt.Printf("%d %s\n", msg.Offset, msg.Value)
		session.MarkMessage(msg, "")
		h.got++
		done := h.got >= h.want
		h.mu.Unlock()
		if done {
			session.Commit()
			h.cancel()
			return nil
		}
	}
	return nil
}

func group(bootstrap, topic, groupID string, n int) {
	consumerGroup, err := sarama.NewConsumerGroup([]string{bootstrap}, groupID, config())
	if err != nil {
		fail("consumer group: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	handler := &groupHandler{want: n, cancel: cancel}
	go func() {
		for err := range consumerGroup.Errors() {
			fmt.Fprintf(os.Stderr, "sarama-client: group error: %v\n", err)
		}
	}()
	for ctx.Err() == nil {
		if err := consumerGroup.Consume(ctx, []string{topic}, handler); err != nil {
			fail("group consume: %v", err)
		}
	}
	if err := consumerGroup.Close(); err != nil {
		fail("leaving the group: %v", err)
	}
	if handler.got < n {
		fail("only %d of %d records within %v", handler.got, n, deadline)
	}
}

func offsets(bootstrap, topic string) {
	client, err := sarama.NewClient([]string{bootstrap}, config())
	if err != nil {
		fail("client: %v", err)
	}
	defer client.Close()
	oldest, err := client.GetOffset(topic, 0, sarama.OffsetOldest)
	if err != nil {
		fail("oldest offset: %v", err)
	}
	newest, err := client.GetOffset(topic, 0, sarama.OffsetNewest)
	if err != nil {
		fail("newest offset: %v", err)
	}
	fmt.Printf("oldest %d newest %d\n", oldest, newest)
}

func committed(bootstrap, topic, groupID string) {
	admin, err := sarama.NewClusterAdmin([]string{bootstrap}, config())
	if err != nil {
		fail("admin: %v", err)
	}
	defer admin.Close()
	response, err := admin.ListConsumerGroupOffsets(groupID, map[string][]int32{topic: {0}})
	if err != nil {
		fail("offset fetch: %v", err)
	}
	block := response.GetBlock(topic, 0)
	if block == nil {
		fail("no offset for %s[0] in the answer", topic)
	}
	if block.Err != sarama.ErrNoError {
		fail("offset fetch: %v", block.Err)
	}
	fmt.Println(block.Offset)
}

func main() {
	args := os.Args[1:]
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(deadline + 15*time.Second):
			fail("no result within %v", deadline+15*time.Second)
		}
	}()
	switch {
	case len(args) == 4 && args[0] == "produce":
		produce(args[1], args[2], count(args[3]))
	case len(args) == 4 && args[0] == "consume":
		consume(args[1], args[2], count(args[3]))
	case len(args) == 5 && args[0] == "group":
		group(args[1], args[2], args[3], count(args[4]))
	case len(args) == 3 && args[0] == "offsets":
		offsets(args[1], args[2])
	case len(args) == 4 && args[0] == "committed":
		committed(args[1], args[2], args[3])
	default:
		fail("usage: produce|consume|group|offsets|committed BOOTSTRAP TOPIC [GROUP] [COUNT]")
	}
	close(done)
}

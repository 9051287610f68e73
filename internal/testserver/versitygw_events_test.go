package testserver

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/nats-io/nats.go"
)

// A gateway started with notifications publishes one for each object
// change in every bucket, with no configuration per bucket (which it does
// not implement), naming the key as it is, unencoded.
func TestVersityGWNotifiesEveryBucketsChangesWithoutConfiguration(t *testing.T) {
	const topic = "s3.events"
	n := StartNATS(t)
	g := StartVersityGWWithEvents(t, n.URL, topic)
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatalf("nats.Connect: %v", err)
	}
	defer nc.Close()
	msgs := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe(topic, msgs)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	defer sub.Unsubscribe()
	if err := nc.FlushTimeout(startTimeout); err != nil {
		t.Fatalf("flush: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	c := g.Client()

	for _, bucket := range []string{g.NewBucket(t), g.NewBucket(t)} {
		const key = "dir/a b+é.txt"
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader("x")}); err != nil {
			t.Fatalf("put: %v", err)
		}
		// Waited for before the next request: the gateway encodes it from
		// the request's buffers after answering.
		var m *nats.Msg
		select {
		case m = <-msgs:
		case <-time.After(startTimeout):
			t.Fatalf("no notification of %s/%s within %v", bucket, key, startTimeout)
		}
		var got struct {
			Records []struct {
				EventName string `json:"eventName"`
				S3        struct {
					Bucket struct{ Name string } `json:"bucket"`
					Object struct{ Key string }  `json:"object"`
				} `json:"s3"`
			}
		}
		if err := json.Unmarshal(m.Data, &got); err != nil || len(got.Records) != 1 {
			t.Fatalf("notification %s: %v, want one record", m.Data, err)
		}
		r := got.Records[0]
		if r.EventName != "s3:ObjectCreated:Put" || r.S3.Bucket.Name != bucket || r.S3.Object.Key != key {
			t.Errorf("notification %s, want s3:ObjectCreated:Put of %s/%s", m.Data, bucket, key)
		}
	}

	_, err = c.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{
		Bucket: aws.String(g.NewBucket(t)), NotificationConfiguration: &types.NotificationConfiguration{},
	})
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "NotImplemented" {
		t.Errorf("PutBucketNotificationConfiguration: %v, want NotImplemented", err)
	}
}

package testserver

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// VersityGWTestEvent is the event name of the message a gateway started
// with notifications publishes on its topic once it has connected to NATS;
// it names no bucket or object of the gateway.
const VersityGWTestEvent = "s3:TestEvent"

// StartVersityGWWithEvents runs versitygw as StartVersityGW does, with S3
// event notifications published to core NATS at natsURL on the subject
// topic (--event-nats-url, --event-nats-topic).
//
// Notifications are gateway-wide: the gateway sends one for each object
// it changes in any bucket, with no configuration per bucket (it answers
// PutBucketNotificationConfiguration with NotImplemented), so NewBucket
// needs nothing more. Each is a JSON object with one record in Records:
// eventName (such as "s3:ObjectCreated:Put"), s3.bucket.name and
// s3.object.key, the key as it is, not URL-encoded. What v1.8.0 does with
// them matters to a test:
//
//   - Each is published from a goroutine of its own once the request has
//     been answered: at most once, in no particular order, and after the
//     answer.
//   - It is encoded from the request's buffers, which the gateway may have
//     reused for a later request by then: under load a notification names
//     that request's bucket or key instead, and the change it stood for
//     goes unreported. A test that needs each change's own notification
//     waits for it before it sends the next request.
//   - Its NATS client is nats.go's default: while NATS is down it holds
//     what it publishes (up to 8 MB) and sends it once reconnected, but
//     after 60 attempts two seconds apart it gives up, and the gateway
//     sends nothing more until restarted. It cannot start without NATS,
//     so the server at natsURL must be running.
//
// Once connected, the gateway publishes a test event ({"Event":
// "s3:TestEvent", ...}) on topic; StartVersityGWWithEvents waits for it
// (30 s at most, which fail t) before it returns, so that it never reaches
// a subscriber made afterwards. A Restart publishes another.
func StartVersityGWWithEvents(t testing.TB, natsURL, topic string) *VersityGW {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatalf("connect to NATS at %s: %v", natsURL, err)
	}
	defer nc.Close()
	started := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(topic, started)
	if err != nil {
		t.Fatalf("subscribe to %q: %v", topic, err)
	}
	defer sub.Unsubscribe()
	if err := nc.FlushTimeout(startTimeout); err != nil {
		t.Fatalf("subscribe to %q: %v", topic, err)
	}

	g := startVersityGW(t, "--event-nats-url", natsURL, "--event-nats-topic", topic)

	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	for {
		select {
		case m := <-started:
			var test struct{ Event string }
			if json.Unmarshal(m.Data, &test) == nil && test.Event == VersityGWTestEvent {
				return g
			}
		case <-deadline.C:
			t.Fatalf("versitygw published no %s on %q within %v\n%s", VersityGWTestEvent, topic, startTimeout, g.Process.Output())
		}
	}
}

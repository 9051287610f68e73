package backend_s3_test

import (
	"context"
	"log"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_s3"
)

// The caller builds the client, so credentials stay in its hands; here an
// S3-compatible server on the local machine with path-style addressing.
func ExampleNew() {
	client := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String("http://127.0.0.1:7070"),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider("access", "secret", ""),
	})
	store, err := backend_s3.New(client, "rooms", "room-42", backend_s3.WithPartSize(8<<20))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	w, err := store.Append(ctx, "chat/log.txt", backend.WriteOptions{ContentType: "text/plain"})
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Write(ctx, []byte("hello\n")); err != nil {
		log.Fatal(err)
	}
	if _, err := w.Commit(ctx); err != nil {
		_ = w.Abort(ctx)
		log.Fatal(err)
	}
}

// OpenURL reads credentials from the default AWS chain; importing the
// package is enough for backend.Open (and roomstore.OpenURL) to know "s3".
func ExampleOpenURL() {
	store, err := backend.Open(context.Background(),
		"s3://rooms/room-42?region=us-east-1&endpoint=http://127.0.0.1:7070&path_style=true")
	if err != nil {
		log.Fatal(err)
	}
	_ = store
}

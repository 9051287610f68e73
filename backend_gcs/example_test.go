package backend_gcs_test

import (
	"context"
	"log"
	"os"

	"cloud.google.com/go/storage"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_gcs"
)

// New takes a client the caller built with its own credentials; the
// backend never closes it. A signing identity enables native presigned
// URLs.
func ExampleNew() {
	ctx := context.Background()
	client, err := storage.NewClient(ctx) // Application Default Credentials
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	key, err := os.ReadFile("/run/secrets/signer.pem")
	if err != nil {
		log.Fatal(err)
	}
	b, err := backend_gcs.New(client, "my-bucket", "rooms/prod",
		backend_gcs.WithSigner("signer@my-project.iam.gserviceaccount.com", key))
	if err != nil {
		log.Fatal(err)
	}
	_ = b // hand b to roomstore.New
}

// Importing the package registers gs:// for roomstore.OpenURL and
// backend.Open; endpoint= points it at an emulator without credentials.
func Example_openURL() {
	b, err := backend.Open(context.Background(), "gs://my-bucket/rooms?endpoint=http://127.0.0.1:4443")
	if err != nil {
		log.Fatal(err)
	}
	defer b.(*backend_gcs.Backend).Close() // closes the client the opener built
}

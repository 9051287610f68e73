// Package rawsdk holds the baselines' own S3 upload: what a careful caller
// of the raw aws-sdk-go-v2 client writes to stream a file to S3 in the
// same part size as roomstore's S3 backend, so that the benchmarks compare
// the engine with the SDK doing the same requests.
package rawsdk

import (
	"bytes"
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// S3Writer streams an object to S3: it buffers one part, uploads each full
// part of a multipart upload (started by the first full part), and at
// Close uploads the rest as the last part and completes the upload, or
// sends the whole object with one PutObject when it never filled a part.
// It is not safe for concurrent use.
type S3Writer struct {
	ctx      context.Context
	client   *s3.Client
	bucket   string
	key      string
	partSize int
	buf      []byte
	id       *string
	parts    []types.CompletedPart
}

// NewS3Writer returns a writer of bucket/key with parts of partSize bytes
// (at least 5 MiB, S3's minimum). It makes no request.
func NewS3Writer(ctx context.Context, client *s3.Client, bucket, key string, partSize int) *S3Writer {
	return &S3Writer{ctx: ctx, client: client, bucket: bucket, key: key, partSize: partSize, buf: make([]byte, 0, partSize)}
}

// Write buffers p, uploading every part it fills.
func (w *S3Writer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), w.partSize-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == w.partSize {
			if err := w.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (w *S3Writer) flush() error {
	if w.id == nil {
		out, err := w.client.CreateMultipartUpload(w.ctx, &s3.CreateMultipartUploadInput{Bucket: &w.bucket, Key: &w.key})
		if err != nil {
			return err
		}
		w.id = out.UploadId
	}
	num := int32(len(w.parts) + 1)
	out, err := w.client.UploadPart(w.ctx, &s3.UploadPartInput{
		Bucket: &w.bucket, Key: &w.key, UploadId: w.id, PartNumber: aws.Int32(num),
		Body: bytes.NewReader(w.buf), ContentLength: aws.Int64(int64(len(w.buf))),
	})
	if err != nil {
		return err
	}
	w.parts = append(w.parts, types.CompletedPart{PartNumber: aws.Int32(num), ETag: out.ETag})
	w.buf = w.buf[:0]
	return nil
}

// Close makes the object visible: PutObject of the buffer when no part was
// uploaded, else the last part and CompleteMultipartUpload.
func (w *S3Writer) Close() error {
	if w.id == nil {
		_, err := w.client.PutObject(w.ctx, &s3.PutObjectInput{
			Bucket: &w.bucket, Key: &w.key,
			Body: bytes.NewReader(w.buf), ContentLength: aws.Int64(int64(len(w.buf))),
		})
		return err
	}
	if len(w.buf) > 0 {
		if err := w.flush(); err != nil {
			return err
		}
	}
	_, err := w.client.CompleteMultipartUpload(w.ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &w.bucket, Key: &w.key, UploadId: w.id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: w.parts},
	})
	if err != nil {
		return fmt.Errorf("complete %s: %w", w.key, err)
	}
	return nil
}

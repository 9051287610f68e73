// Package tusclient is a small client of the tus 1.0 protocol of
// resumable uploads, as the room server speaks it (roomserver.Uploads):
// it creates an upload (POST), sends its bytes (PATCH) and, when a
// request fails on the way (a dropped connection, a server error, a
// server busy), asks the server how much it kept (HEAD) and goes on from
// there, a bounded number of times with a growing pause between them. A
// refusal that retrying cannot change (most 4xx) ends the upload at once.
//
// # Errors
//
// A refusal is a *StatusError with the server's status and its one-line
// text; ErrRetriesExhausted wraps the last failure of an upload whose
// Client.Retries retries in a row failed without progress; the context's
// error ends an upload at once.
package tusclient

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Version is the tus version the client speaks.
const Version = "1.0.0"

// Defaults of a Client's zero fields.
const (
	DefaultRetries = 8
	DefaultBackoff = 250 * time.Millisecond
	MaxBackoff     = 8 * time.Second
)

// ErrRetriesExhausted ends an upload that failed, then failed again at
// each of Client.Retries retries in a row, without the server keeping a
// byte more.
var ErrRetriesExhausted = errors.New("tus: too many failed attempts")

// StatusError is a request the server refused: its status and the first
// line of its answer.
type StatusError struct {
	Method string
	Status int
	Text   string
}

func (e *StatusError) Error() string {
	if e.Text == "" {
		return fmt.Sprintf("tus %s: %d %s", e.Method, e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("tus %s: %d %s", e.Method, e.Status, e.Text)
}

// Retryable reports whether the same request may succeed later: a server
// error, a server or identity that is busy (429, 503), a lock held by a
// request the server has not yet seen end (423), or an offset the server
// moved past meanwhile (409 on PATCH, after which the client asks for the
// offset again).
func (e *StatusError) Retryable() bool {
	switch {
	case e.Status >= 500, e.Status == http.StatusTooManyRequests, e.Status == http.StatusLocked:
		return true
	case e.Status == http.StatusConflict && e.Method == http.MethodPatch:
		return true
	}
	return false
}

// Client uploads files over tus. Its zero value uses http.DefaultClient,
// no token, and the defaults.
type Client struct {
	// HTTP sends the requests (default http.DefaultClient).
	HTTP *http.Client
	// Token is sent as Authorization: Bearer, if set.
	Token string
	// Retries bounds the retries after a failure, in a row without
	// progress, before an upload fails (default DefaultRetries).
	Retries int
	// Backoff is the pause after the first failure, doubled after each
	// failure in a row up to MaxBackoff (default DefaultBackoff).
	Backoff time.Duration
	// Progress, if set, is told the offset the upload has reached as its
	// bytes are sent (after a resumption, from the server's offset).
	Progress func(offset int64)
	// Retried, if set, is told of each failure the client retries.
	Retried func(err error)
}

// Upload creates an upload of size bytes at endpoint (such as
// http://host/tus/room/) with metadata meta, sends src's bytes from 0 to
// size, resuming after failures, and returns the upload's URL once the
// server has them all. An upload that fails after its creation returns
// its URL too, with the error, for the caller to resume or terminate.
// Errors: see the package's.
func (c *Client) Upload(ctx context.Context, endpoint string, src io.ReaderAt, size int64, meta map[string]string) (string, error) {
	var loc string
	err := c.retrying(ctx, func() (bool, error) {
		var err error
		loc, err = c.Create(ctx, endpoint, size, meta)
		return false, err
	})
	if err != nil {
		return "", err
	}
	return loc, c.Resume(ctx, loc, src, size)
}

// Resume sends the rest of upload loc's size bytes from src, from the
// offset the server has: the whole upload, resumed as often as needed.
func (c *Client) Resume(ctx context.Context, loc string, src io.ReaderAt, size int64) error {
	offset := int64(-1) // unknown: ask
	var reached int64   // the most the server said it has
	return c.retrying(ctx, func() (bool, error) {
		if offset < 0 {
			o, err := c.Offset(ctx, loc)
			if err != nil {
				return false, err
			}
			offset = o
		}
		progress := offset > reached
		reached = max(reached, offset)
		for offset < size {
			o, err := c.Patch(ctx, loc, src, offset, size)
			if err != nil {
				offset = -1
				return progress, err
			}
			if o <= offset {
				offset = -1
				return progress, fmt.Errorf("tus PATCH: the server kept nothing (offset %d)", o)
			}
			offset, reached, progress = o, o, true
		}
		if offset > size {
			return false, fmt.Errorf("tus: %w: the server has %d bytes of %d", errFatal, offset, size)
		}
		return false, nil
	})
}

// retrying runs attempt until it succeeds, fails for good, or fails
// Retries times in a row; an attempt that made progress (reported by its
// first result) starts the count, and the pause, again.
func (c *Client) retrying(ctx context.Context, attempt func() (progress bool, err error)) error {
	retries, backoff := c.Retries, c.Backoff
	if retries <= 0 {
		retries = DefaultRetries
	}
	if backoff <= 0 {
		backoff = DefaultBackoff
	}
	pause := backoff
	failed := 0
	for {
		progress, err := attempt()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case !retryable(err):
			return err
		}
		if progress {
			failed, pause = 0, backoff
		}
		failed++
		if failed > retries {
			return fmt.Errorf("%w (%d): %w", ErrRetriesExhausted, retries, err)
		}
		if c.Retried != nil {
			c.Retried(err)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		pause = min(pause*2, MaxBackoff)
	}
}

// retryable reports whether an attempt's error may go away: a refusal
// that says so, or anything but a refusal (the network's errors).
func retryable(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Retryable()
	}
	return !errors.Is(err, errFatal)
}

// errFatal marks an answer that is not tus: retrying would not help.
var errFatal = errors.New("not a tus answer")

// Create creates an upload of size bytes at endpoint with metadata meta
// and returns its URL (the answer's Location, resolved against endpoint).
func (c *Client) Create(ctx context.Context, endpoint string, size int64, meta map[string]string) (string, error) {
	req, err := c.request(ctx, http.MethodPost, endpoint, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
	if len(meta) > 0 {
		req.Header.Set("Upload-Metadata", EncodeMetadata(meta))
	}
	resp, err := c.do(req, http.StatusCreated)
	if err != nil {
		return "", err
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("tus POST: %w: no Location", errFatal)
	}
	base, err := url.Parse(endpoint)
	if err != nil {
		return "", err
	}
	u, err := base.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("tus POST: %w: a bad Location", errFatal)
	}
	return u.String(), nil
}

// Offset asks the server how many bytes of upload loc it has (HEAD).
func (c *Client) Offset(ctx context.Context, loc string) (int64, error) {
	req, err := c.request(ctx, http.MethodHead, loc, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.do(req, http.StatusOK, http.StatusNoContent)
	if err != nil {
		return 0, err
	}
	return offsetOf(resp)
}

// Patch sends src's bytes from offset to size to upload loc in one PATCH
// and returns the offset the server reached.
func (c *Client) Patch(ctx context.Context, loc string, src io.ReaderAt, offset, size int64) (int64, error) {
	var body io.Reader = io.NewSectionReader(src, offset, size-offset)
	if c.Progress != nil {
		c.Progress(offset)
		body = &counting{r: body, at: offset, tell: c.Progress}
	}
	req, err := c.request(ctx, http.MethodPatch, loc, body)
	if err != nil {
		return 0, err
	}
	req.ContentLength = size - offset
	req.Header.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	resp, err := c.do(req, http.StatusNoContent, http.StatusOK)
	if err != nil {
		return 0, err
	}
	return offsetOf(resp)
}

// Terminate abandons upload loc (DELETE).
func (c *Client) Terminate(ctx context.Context, loc string) error {
	req, err := c.request(ctx, http.MethodDelete, loc, nil)
	if err != nil {
		return err
	}
	_, err = c.do(req, http.StatusNoContent, http.StatusOK)
	return err
}

func (c *Client) request(ctx context.Context, method, u string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("tus %s: %w: %w", method, errFatal, err)
	}
	req.Header.Set("Tus-Resumable", Version)
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

// do sends req and reads its answer, which must have one of the statuses
// ok; any other is a *StatusError.
func (c *Client) do(req *http.Request, ok ...int) (*http.Response, error) {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("tus %s: %w", req.Method, err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if !slices.Contains(ok, resp.StatusCode) {
		line, _, _ := strings.Cut(strings.TrimSpace(string(text)), "\n")
		return nil, &StatusError{Method: req.Method, Status: resp.StatusCode, Text: line}
	}
	return resp, nil
}

func offsetOf(resp *http.Response) (int64, error) {
	o, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || o < 0 {
		return 0, fmt.Errorf("tus %s: %w: a bad Upload-Offset", resp.Request.Method, errFatal)
	}
	return o, nil
}

// EncodeMetadata is meta as Upload-Metadata carries it: key and base64
// value pairs, comma-separated, in the order of the keys.
func EncodeMetadata(meta map[string]string) string {
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + base64.StdEncoding.EncodeToString([]byte(meta[k]))
	}
	return strings.Join(parts, ",")
}

// counting tells the offset reached as its reader is read.
type counting struct {
	r    io.Reader
	at   int64
	tell func(int64)
}

func (c *counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.at += int64(n)
		c.tell(c.at)
	}
	return n, err
}

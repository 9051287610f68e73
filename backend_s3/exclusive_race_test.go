package backend_s3_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore/backend"
)

// countingDoer counts the requests that got no answer at all.
type countingDoer struct {
	s3.HTTPClient
	failed *atomic.Int64
}

func (d countingDoer) Do(r *http.Request) (*http.Response, error) {
	resp, err := d.HTTPClient.Do(r)
	if err != nil {
		d.failed.Add(1)
	}
	return resp, err
}

// Two exclusive creates of one new file commit at once: one wins and the
// other gets fs.ErrExist, also when the server answers the loser by
// resetting its connection while the body is still coming in (versitygw
// does, for a PUT of a few MiB), which the SDK reports as a transport
// error once its retries are spent.
func TestExclusiveCreateRace(t *testing.T) {
	g := startGateway(t)
	for _, size := range []int{4 * mib, 5 * mib} {
		t.Run(fmt.Sprintf("%d MiB", size/mib), func(t *testing.T) {
			var resets atomic.Int64
			// One attempt per request: a reset is then what the backend
			// sees, as it does once the SDK's retries all met one.
			client := s3.New(g.client.Options(), func(o *s3.Options) {
				o.HTTPClient = countingDoer{o.HTTPClient, &resets}
				o.RetryMaxAttempts = 1
			})
			s := g.storeIn(t, g.NewBucket(t), "room", client)
			// Each try is bounded by the test's deadline; a handful is
			// enough to meet the reset on most runs.
			const tries = 12
			overlapped := 0
			for i := range tries {
				key := fmt.Sprintf("f%d", i)
				data := [2][]byte{content(uint64(2*i), size), content(uint64(2*i+1), size)}
				var ws [2]backend.Writer
				for j := range ws {
					w, err := s.Create(t.Context(), key, backend.WriteOptions{Exclusive: true})
					if err != nil {
						t.Fatal(err)
					}
					writeAll(t, w, data[j], mib)
					ws[j] = w
				}
				var (
					start    = make(chan struct{})
					wg       sync.WaitGroup
					inflight atomic.Int32
					both     atomic.Bool
					errs     [2]error
					// On odd tries the second commit waits for the
					// first: its request then meets a file that exists
					// before its body is in.
					first = make(chan struct{})
				)
				for j, w := range ws {
					wg.Go(func() {
						<-start
						if j == 1 && i%2 == 1 {
							<-first
						}
						if inflight.Add(1) == 2 {
							both.Store(true)
						}
						_, errs[j] = w.Commit(t.Context())
						inflight.Add(-1)
						if j == 0 {
							close(first)
						}
						if err := w.Abort(context.WithoutCancel(t.Context())); err != nil {
							t.Errorf("Abort: %v", err)
						}
					})
				}
				close(start)
				wg.Wait()
				if both.Load() {
					overlapped++
				}
				winner := -1
				for j, err := range errs {
					switch {
					case err == nil && winner < 0:
						winner = j
					case err == nil:
						t.Fatalf("try %d: both exclusive creates succeeded", i)
					case !errors.Is(err, fs.ErrExist):
						t.Fatalf("try %d: the losing create failed with %v, want fs.ErrExist", i, err)
					}
				}
				if winner < 0 {
					t.Fatalf("try %d: both exclusive creates lost: %v", i, errs)
				}
				assertContent(t, s, key, data[winner])
			}
			if overlapped == 0 {
				t.Fatalf("in none of %d tries were both commits in flight at once: the race never happened", tries)
			}
			t.Logf("%d of %d tries raced; %d requests got no answer", overlapped, tries, resets.Load())
		})
	}
}

// errReset stands for the connection reset that ends a request the server
// refused while its body was still coming in.
var errReset = errors.New("connection reset by peer")

// lossyDoer sends each request through, and for those that lose says so
// loses the answer, returning errReset instead; with send false a losing
// request is not even sent.
type lossyDoer struct {
	s3.HTTPClient
	lose func(*http.Request) bool
	send bool
}

func (d lossyDoer) Do(r *http.Request) (*http.Response, error) {
	if !d.lose(r) {
		return d.HTTPClient.Do(r)
	}
	if d.send {
		resp, err := d.HTTPClient.Do(r)
		if err == nil {
			resp.Body.Close()
		}
	}
	return nil, errReset
}

// An exclusive create whose request got no answer is settled by what the
// server holds: its own commit is a success, another's fs.ErrExist, none
// the transport error.
func TestExclusiveCreateWithoutAnswer(t *testing.T) {
	g := startGateway(t)
	for _, size := range []int{4 * mib, 5 * mib} {
		// The request that commits: a PUT of the whole file under a part,
		// the completion of the multipart upload otherwise.
		commits := func(r *http.Request) bool {
			if size < part {
				return r.Method == http.MethodPut && !r.URL.Query().Has("partNumber")
			}
			return r.Method == http.MethodPost && r.URL.Query().Has("uploadId")
		}
		lossy := func(t *testing.T, attempts int, send bool) (*store, *store) {
			var once atomic.Bool
			client := s3.New(g.client.Options(), func(o *s3.Options) {
				o.HTTPClient = lossyDoer{HTTPClient: o.HTTPClient, send: send, lose: func(r *http.Request) bool {
					return commits(r) && once.CompareAndSwap(false, true)
				}}
				o.RetryMaxAttempts = attempts
			})
			bucket := g.NewBucket(t)
			return g.storeIn(t, bucket, "room", client), g.storeIn(t, bucket, "room", g.client)
		}
		create := func(t *testing.T, s *store, data []byte) (backend.Info, error) {
			w, err := s.Create(t.Context(), "f", backend.WriteOptions{Exclusive: true})
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, w, data, mib)
			defer func() {
				if err := w.Abort(t.Context()); err != nil {
					t.Errorf("Abort: %v", err)
				}
			}()
			return w.Commit(t.Context())
		}
		name := fmt.Sprintf("%d MiB", size/mib)

		t.Run(name+": the loser's lost answer is fs.ErrExist", func(t *testing.T) {
			s, other := lossy(t, 1, true)
			theirs := content(1, 10)
			put(t, other, "f", theirs)
			_, err := create(t, s, content(2, size))
			assertIs(t, err, fs.ErrExist)
			assertContent(t, s, "f", theirs)
		})

		t.Run(name+": the winner's lost answer is its success", func(t *testing.T) {
			s, _ := lossy(t, 1, true)
			data := content(3, size)
			info, err := create(t, s, data)
			if err != nil {
				t.Fatalf("Commit whose answer was lost: %v, want success (the file is its own)", err)
			}
			assertContent(t, s, "f", data)
			if st, err := s.Stat(t.Context(), "f"); err != nil || st.ETag != info.ETag || st.Size != int64(size) {
				t.Errorf("Stat = %+v, %v; want the Commit's Info %+v", st, err, info)
			}
		})

		t.Run(name+": a retry that meets its own create is its success", func(t *testing.T) {
			s, _ := lossy(t, 3, true)
			data := content(4, size)
			if _, err := create(t, s, data); err != nil {
				t.Fatalf("Commit retried after its first try landed: %v, want success", err)
			}
			assertContent(t, s, "f", data)
		})

		t.Run(name+": no answer and no file is the transport error", func(t *testing.T) {
			s, _ := lossy(t, 1, false)
			_, err := create(t, s, content(5, size))
			if !errors.Is(err, errReset) || errors.Is(err, fs.ErrExist) {
				t.Fatalf("Commit that never reached the server: %v, want the transport error", err)
			}
			if _, err := s.Stat(t.Context(), "f"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stat after the lost create = %v, want fs.ErrNotExist", err)
			}
		})
	}
}

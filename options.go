package roomstore

import (
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/roomstore/roomstore/events"
)

// Defaults for the options below.
const (
	DefaultIdleTimeout    = 10 * time.Minute
	DefaultMaxOpenHandles = 10_000
	DefaultURLExpiry      = 15 * time.Minute
	DefaultEventBuffer    = 4096
	DefaultEventHistory   = events.DefaultHistory
	DefaultCommitAttempts = 64
	DefaultHandleTimeout  = 5 * time.Minute
)

// MinSigningKeyLen is the shortest key WithSigningKey accepts, in bytes.
const MinSigningKeyLen = 32

// Option configures New and OpenURL. A bad option makes them fail with an
// *fs.PathError whose Err wraps fs.ErrInvalid and names the option.
type Option func(*config) error

// badOption reports an option value that New and OpenURL refuse.
func badOption(format string, args ...any) error {
	return fmt.Errorf("%w: %s", fs.ErrInvalid, fmt.Sprintf(format, args...))
}

type config struct {
	logger       *slog.Logger
	idleTimeout  time.Duration
	maxHandles   int
	urlExpiry    time.Duration
	eventBuffer  int
	eventHistory int
	signingKey   []byte
	baseURL      *baseRef // shared by the config's copies; SetBaseURL sets it later
	attempts     int
	handleCall   time.Duration
	transport    events.Transport
	storeID      string
	meters       metric.MeterProvider // nil: no metrics
	tracers      trace.TracerProvider // nil: no spans
	selfSign     bool                 // sign every URL, never presign
	quota        Quota                // zero: none
	watch        *Watch               // nil: no WithWatch
	history      History
	historyClock func() time.Time
	resumable    ResumableLimits
}

func defaultConfig() config {
	return config{
		logger:       slog.Default(),
		idleTimeout:  DefaultIdleTimeout,
		maxHandles:   DefaultMaxOpenHandles,
		urlExpiry:    DefaultURLExpiry,
		eventBuffer:  DefaultEventBuffer,
		eventHistory: DefaultEventHistory,
		attempts:     DefaultCommitAttempts,
		handleCall:   DefaultHandleTimeout,
		baseURL:      new(baseRef),
		history:      History{Versions: DefaultHistoryVersions, MaxAge: DefaultHistoryAge},
		resumable:    ResumableLimits{MaxAge: DefaultResumableAge, PerParticipant: DefaultResumablePerParticipant},
		historyClock: time.Now,
	}
}

// WithLogger sets the logger for recovered handler panics, dropped events
// and discarded handles (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return badOption("WithLogger(nil)")
		}
		c.logger = l
		return nil
	}
}

// WithIdleTimeout sets how long a handle may go without a Write before it
// is aborted and its bytes discarded (default DefaultIdleTimeout). It must
// be positive.
func WithIdleTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return badOption("idle timeout must be positive, got %v", d)
		}
		c.idleTimeout = d
		return nil
	}
}

// WithMaxOpenHandles bounds the handles open at once (default
// DefaultMaxOpenHandles); Open beyond it fails with ErrTooManyHandles.
func WithMaxOpenHandles(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return badOption("max open handles must be at least 1, got %d", n)
		}
		c.maxHandles = n
		return nil
	}
}

// MaxOpenHandles returns the handles the engine lets be open at once
// (WithMaxOpenHandles), so that a server can give each participant a
// share of them.
func (e *Engine) MaxOpenHandles() int { return e.cfg.maxHandles }

// WithURLExpiry sets how long a DownloadURL stays valid (default
// DefaultURLExpiry). S3 presigned URLs allow at most 7 days.
func WithURLExpiry(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Second {
			return badOption("URL expiry must be at least 1s, got %v", d)
		}
		c.urlExpiry = d
		return nil
	}
}

// WithEventBuffer sets how many events may wait for each subscriber
// (default DefaultEventBuffer). When a subscriber falls further behind, its
// events are dropped, counted and logged; writers never wait.
func WithEventBuffer(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return badOption("event buffer must be at least 1, got %d", n)
		}
		c.eventBuffer = n
		return nil
	}
}

// WithEventHistory sets how many of its latest events the engine keeps
// for SubscribeAfter and EventsAfter (default DefaultEventHistory), so
// that a subscriber that comes back with the position of the last event
// it saw gets what it missed rather than an EventOverflow; 0 keeps none.
// The history grows only as events are published, and each event held
// costs about 350 bytes (see events.WithHistory). An n below 0 is refused
// with fs.ErrInvalid.
func WithEventHistory(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return badOption("event history must not be negative, got %d", n)
		}
		c.eventHistory = n
		return nil
	}
}

// WithEventTransport carries the engine's events to every other engine on
// the same store that uses a transport to the same place, and theirs to
// this engine's subscribers, who cannot tell them from local ones except by
// Event.Origin (see events.Transport, and package events_nats for NATS
// JetStream). The engine still delivers its own events to its own
// subscribers directly, whether or not the transport's server is
// reachable. The store is named by WithStoreID, or else by the backend (see
// backend.Identifier); New and OpenURL fail with fs.ErrInvalid if neither
// can name it, or with the transport's error if it refuses to attach. A
// nil t is refused with fs.ErrInvalid.
func WithEventTransport(t events.Transport) Option {
	return func(c *config) error {
		if t == nil {
			return badOption("WithEventTransport(nil)")
		}
		c.transport = t
		return nil
	}
}

// WithStoreID names the store for WithEventTransport: engines with the same
// id exchange events, so it must be the same for every engine on the store
// and differ between stores. Without it the backend names the store (for
// file:// the directory's absolute path; for s3:// and gs:// the endpoint,
// bucket and prefix), which is right unless processes reach one store by
// different names (a network share mounted at different paths) or
// different stores by one name. An empty id is refused with fs.ErrInvalid.
func WithStoreID(id string) Option {
	return func(c *config) error {
		if id == "" {
			return badOption("WithStoreID(\"\")")
		}
		c.storeID = id
		return nil
	}
}

// WithSigningKey sets the HMAC-SHA256 key for the URLs the engine signs
// itself (backends without native presigning). It must be at least
// MinSigningKeyLen bytes. Without it a random key is generated, so such
// URLs stop working when the process ends and are not accepted by other
// processes; give every replica that serves one room's Engine.Handler the
// same key. The signature covers the base URL's path, so rooms mounted at
// different paths never accept each other's URLs even with one key.
func WithSigningKey(key []byte) Option {
	return func(c *config) error {
		if len(key) < MinSigningKeyLen {
			return badOption("signing key must be at least %d bytes, got %d", MinSigningKeyLen, len(key))
		}
		c.signingKey = append([]byte(nil), key...)
		return nil
	}
}

// WithBaseURL sets where Engine.Handler is served, such as
// "https://files.example.com/dl", so that DownloadURL can return
// engine-signed URLs below it for backends without native presigning.
// Without it, DownloadURL on such a backend fails with
// errors.ErrUnsupported. Engine.SetBaseURL sets it once the engine
// exists.
func WithBaseURL(base string) Option {
	return func(c *config) error {
		u, err := parseBaseURL(base)
		if err != nil {
			return err
		}
		c.baseURL.p.Store(u)
		return nil
	}
}

// WithPresign(false) has DownloadURL sign every URL itself below
// WithBaseURL, to be served by Handler, even on backends that presign
// natively (S3, GCS): such a URL reaches the store through the server
// that serves Handler (wherever the store's own endpoint is not
// reachable), stays bound to the version it was issued for, and has
// the engine's own expiry. It needs WithBaseURL. WithPresign(true), the
// default, presigns natively where the backend can: downloads then go to
// the store directly, and a presigned URL names the path, so it serves
// whatever version is there when it is fetched.
func WithPresign(native bool) Option {
	return func(c *config) error {
		c.selfSign = !native
		return nil
	}
}

// WithCommitAttempts sets how many times Close tries to commit an append
// that keeps losing races to other writers before it fails with
// ErrConflict (default DefaultCommitAttempts).
func WithCommitAttempts(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return badOption("commit attempts must be at least 1, got %d", n)
		}
		c.attempts = n
		return nil
	}
}

// WithHandleTimeout bounds each call made through a Handle's own Write,
// Close and Abort, the io.WriteCloser methods that take no context: they
// run as the handle's owner on a context that ends after d (default
// DefaultHandleTimeout), and a call cut short by it fails as one whose
// context ended (a Write or Close discards the handle). Calls through the
// Engine (Engine.Write, Engine.Close) are bound by their own context
// alone. It must be positive.
func WithHandleTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return badOption("handle timeout must be positive, got %v", d)
		}
		c.handleCall = d
		return nil
	}
}

// WithMeterProvider makes the engine record its metrics (see Observability
// in the package documentation) with instruments of mp, under the
// instrumentation scope "github.com/roomstore/roomstore". The instruments
// are synchronous, so engines that share mp add up, but for the
// transport's observable mirrors, one series per engine (by the attribute
// roomstore.engine). Without this option
// the engine records no metric and never calls OpenTelemetry (Engine.Stats
// still counts). A nil mp is refused with fs.ErrInvalid, and so is one
// that refuses to create an instrument.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if mp == nil {
			return badOption("WithMeterProvider(nil)")
		}
		c.meters = mp
		return nil
	}
}

// WithTracerProvider makes the engine record a span for each public call
// (see Observability in the package documentation) with a tracer of tp,
// under the instrumentation scope "github.com/roomstore/roomstore", each
// a child of the span in the call's context. Without this option the
// engine records no span and never calls OpenTelemetry. A nil tp is
// refused with fs.ErrInvalid.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error {
		if tp == nil {
			return badOption("WithTracerProvider(nil)")
		}
		c.tracers = tp
		return nil
	}
}

package bench

import (
	"context"
	"slices"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/internal/telemetry"
)

// instrumentationFlush is how many "on" cycles go between two untimed
// collections of its metrics and resets of its spans, so that the
// recorded spans stay bounded.
const instrumentationFlush = 256

// BenchmarkInstrumentation measures what the engine's instrumentation
// costs the small-file cycle of BenchmarkSmallFile (open, write 4 KiB,
// close, download, stat, delete, on 1,000 rotating names), on the stores
// roomstore.OpenURL returns for "mem://" and "file://DIR?fsync=false".
// Each sub-benchmark runs three engines on stores of their own, one cycle
// each per iteration, in each of their six orders in turn, timing each:
//
//   - uninstrumented: with telemetry.Off set for its cycle, so that the
//     engine keeps no counter and records nothing, as if it had no
//     instrumentation;
//   - off: default options, no providers (the Stats counters only);
//   - on: WithMeterProvider of an OpenTelemetry SDK MeterProvider with a
//     ManualReader and WithTracerProvider of an SDK TracerProvider that
//     records every span (tracetest.SpanRecorder); every 256 of its
//     cycles the metrics are collected and the spans dropped, untimed.
//
// uninstrumented-ns/cycle, off-ns/cycle and on-ns/cycle are the means;
// off/uninstrumented and on/uninstrumented their ratios; the -p50-ns
// metrics the medians; ns/op is the three cycles' sum.
func BenchmarkInstrumentation(b *testing.B) {
	runCases(b, []benchCase{
		{"mem", instrumentationCase(func(b *testing.B, opts ...roomstore.Option) *roomstore.Engine {
			return openURLEngine(b, "mem://", opts...)
		})},
		{"file-nofsync", instrumentationCase(func(b *testing.B, opts ...roomstore.Option) *roomstore.Engine {
			return openURLEngine(b, fileURL(b.TempDir(), false), opts...)
		})},
	})
}

// orders are the six orders of three engines: run in turn, each engine
// goes first, second and third, and follows each of the others, equally
// often (so none pays more often for the garbage "on" leaves).
var orders = [6][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}

// instrumentationCase interleaves the three engines that open makes.
func instrumentationCase(open func(b *testing.B, opts ...roomstore.Option) *roomstore.Engine) func(b *testing.B) {
	return func(b *testing.B) {
		payload := randomBytes(smallFileSize)
		names := smallNames()
		ctx := context.Background()
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		spans := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
		b.Cleanup(func() {
			_ = mp.Shutdown(context.Background())
			_ = tp.Shutdown(context.Background())
		})
		// Made after the providers, so shut down before them.
		engines := [3]*roomstore.Engine{
			open(b),
			open(b),
			open(b, roomstore.WithMeterProvider(mp), roomstore.WithTracerProvider(tp)),
		}
		labels := [3]string{"uninstrumented", "off", "on"}
		b.Cleanup(func() { telemetry.Off.Store(false) })
		cycle := func(e *roomstore.Engine, i int) { smallCycle(b, ctx, e, names[i%len(names)], payload) }
		var (
			total [3]time.Duration
			times [3][]time.Duration
			rm    metricdata.ResourceMetrics
		)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			for _, v := range orders[i%len(orders)] {
				telemetry.Off.Store(v == 0)
				t0 := time.Now()
				cycle(engines[v], i)
				d := time.Since(t0)
				total[v] += d
				times[v] = append(times[v], d)
			}
			i++
			if i%instrumentationFlush == 0 {
				b.StopTimer()
				check(b, reader.Collect(ctx, &rm))
				spans.Reset()
				b.StartTimer()
			}
		}
		telemetry.Off.Store(false)
		var mean [3]float64
		for v := range 3 {
			mean[v] = float64(total[v].Nanoseconds()) / float64(i)
			b.ReportMetric(mean[v], labels[v]+"-ns/cycle")
			b.ReportMetric(float64(medianDuration(times[v]).Nanoseconds()), labels[v]+"-p50-ns")
		}
		b.ReportMetric(mean[1]/mean[0], "off/uninstrumented")
		b.ReportMetric(mean[2]/mean[0], "on/uninstrumented")
	}
}

func medianDuration(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

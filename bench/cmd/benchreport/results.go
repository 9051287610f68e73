package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// results holds every figure of a run.
type results struct {
	// byName maps a benchmark name (without the -GOMAXPROCS suffix) to
	// round to unit to value.
	byName map[string]map[int]map[string]float64
	// order lists the names in the order they first ran.
	order []string
}

func newResults() *results { return &results{byName: map[string]map[int]map[string]float64{}} }

// benchLine matches a `go test -bench` result line.
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.+)$`)

// parse reads the result lines of one round.
func (r *results) parse(in io.Reader, round int) error {
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		fields := strings.Fields(m[3])
		if len(fields)%2 != 0 {
			return fmt.Errorf("odd metric list in %q", sc.Text())
		}
		metrics := map[string]float64{}
		for i := 0; i < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return fmt.Errorf("metric %q in %q: %w", fields[i], sc.Text(), err)
			}
			metrics[fields[i+1]] = v
		}
		if r.byName[m[1]] == nil {
			r.byName[m[1]] = map[int]map[string]float64{}
			r.order = append(r.order, m[1])
		}
		r.byName[m[1]][round] = metrics
	}
	return sc.Err()
}

// values returns name's unit figure of every round that has it, in round
// order.
func (r *results) values(name, unit string) []float64 {
	rounds := r.byName[name]
	keys := make([]int, 0, len(rounds))
	for k := range rounds {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []float64
	for _, k := range keys {
		if v, ok := rounds[k][unit]; ok {
			out = append(out, v)
		}
	}
	return out
}

// median returns the median of name's unit figure over the rounds.
func (r *results) median(name, unit string) (float64, bool) {
	v := r.values(name, unit)
	if len(v) == 0 {
		return math.NaN(), false
	}
	return median(v), true
}

// ratio returns the median over rounds of num/den, each round's ratio
// taken from that round's two figures.
func (r *results) ratio(num, den, unit string) (float64, bool) {
	var ratios []float64
	for round, a := range r.byName[num] {
		b, ok := r.byName[den][round]
		if !ok {
			continue
		}
		x, okx := a[unit]
		y, oky := b[unit]
		if okx && oky && y != 0 {
			ratios = append(ratios, x/y)
		}
	}
	if len(ratios) == 0 {
		return math.NaN(), false
	}
	return median(ratios), true
}

// ratioWithin returns the median over rounds of name's num/den figures,
// two metrics of the same benchmark.
func (r *results) ratioWithin(name, num, den string) (float64, bool) {
	var ratios []float64
	for _, m := range r.byName[name] {
		x, okx := m[num]
		y, oky := m[den]
		if okx && oky && y != 0 {
			ratios = append(ratios, x/y)
		}
	}
	if len(ratios) == 0 {
		return math.NaN(), false
	}
	return median(ratios), true
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// roundRatios returns, in round order, num/den of each round that has
// both: numName's num figure over denName's den figure.
func (r *results) roundRatios(numName, num, denName, den string) []float64 {
	keys := make([]int, 0, len(r.byName[numName]))
	for k := range r.byName[numName] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []float64
	for _, k := range keys {
		x, okx := r.byName[numName][k][num]
		y, oky := r.byName[denName][k][den]
		if okx && oky && y != 0 {
			out = append(out, x/y)
		}
	}
	return out
}

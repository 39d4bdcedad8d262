// Package stats is the arithmetic the benchmarks and the toolbox's load
// generator share, so that a median or a p99 means the same in every table
// of BENCHMARKS.md.
package stats

import "sort"

// Median of v: the middle value, or the mean of the two middle values for
// an even count; 0 for none.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := sorted(v)
	return (s[(len(s)-1)/2] + s[len(s)/2]) / 2
}

// Percentile of v by nearest rank (p in 1..100): the smallest value with
// at least p % of the values at or below it; 0 for none.
func Percentile(v []float64, p int) float64 {
	if len(v) == 0 {
		return 0
	}
	s := sorted(v)
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i]
}

// Ratios divides a by b element by element (round by round), up to the
// shorter of the two.
func Ratios(a, b []float64) []float64 {
	n := min(len(a), len(b))
	r := make([]float64, n)
	for i := range n {
		r[i] = a[i] / b[i]
	}
	return r
}

func sorted(v []float64) []float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s
}

package stats

import "testing"

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{4, 1}, 2.5},
		{[]float64{5, 1, 3}, 3},
		{[]float64{9, 1, 3, 7}, 5},
	} {
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	v := make([]float64, 200)
	for i := range v {
		v[i] = float64(200 - i) // 200 … 1, unsorted on purpose
	}
	for _, c := range []struct {
		p    int
		want float64
	}{{1, 2}, {50, 100}, {99, 198}, {100, 200}} {
		if got := Percentile(v, c.p); got != c.want {
			t.Errorf("Percentile(1..200, %d) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := Percentile([]float64{7}, 99); got != 7 {
		t.Errorf("Percentile of one value = %v, want 7", got)
	}
	if v[0] != 200 {
		t.Error("Percentile sorted its input in place")
	}
}

func TestRatios(t *testing.T) {
	got := Ratios([]float64{2, 9, 5}, []float64{1, 3})
	if len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Errorf("Ratios = %v, want [2 3]", got)
	}
}

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doppel-dev/doppel/internal/stats"
)

// loadResult is what `toolbox load` prints, as one JSON line.
type loadResult struct {
	Sent    int64   `json:"sent"`
	OK      int64   `json:"ok"`
	Errors  int64   `json:"errors"`
	Seconds float64 `json:"seconds"`
	RPS     float64 `json:"rps"` // answered requests per second
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	// Bodies counts the answers by their first line (who answered).
	Bodies map[string]int64 `json:"bodies"`
	Error  string           `json:"error,omitempty"`
}

// loadCmd sends bounded HTTP load to one URL: -n requests, or -duration of
// requests; -c at once on keep-alive connections, each as fast as it can,
// or -rate requests a second in total. Every load ends: both the count and
// the time are bounded (-n or -duration, at most -max-duration).
func loadCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int64("n", 0, "requests in all (0: as many as -duration allows)")
	duration := fs.Duration("duration", 0, "send for this long (0: until -n are sent)")
	maxDuration := fs.Duration("max-duration", 5*time.Minute, "never send for longer")
	conc := fs.Int("c", 1, "concurrent connections")
	rate := fs.Float64("rate", 0, "requests per second in total (0: as fast as -c allows)")
	timeout := fs.Duration("timeout", 10*time.Second, "per request")
	var headers headerFlags
	fs.Var(&headers, "H", `a request header "Name: value" (repeatable)`)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 || (*n <= 0 && *duration <= 0) || *conc < 1 {
		fmt.Fprintln(stderr, "usage: toolbox load (-n N | -duration D) [-c C] [-rate R] [-H 'Name: value']... URL")
		return 2
	}
	if *duration <= 0 || *duration > *maxDuration {
		*duration = *maxDuration
	}
	res := load(fs.Arg(0), *n, *duration, *conc, *rate, *timeout, headers)
	json.NewEncoder(stdout).Encode(res)
	if res.Error != "" {
		return 1
	}
	return 0
}

func load(url string, n int64, duration time.Duration, conc int, rate float64, timeout time.Duration, headers headerFlags) loadResult {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: timeout}
	var (
		sent, ok, errs atomic.Int64
		mu             sync.Mutex
		lat            []time.Duration
		bodies         = map[string]int64{}
		firstErr       string
	)
	deadline := time.Now().Add(duration)
	// Paced: one ticket per request at the rate; unpaced: none needed.
	var tickets chan struct{}
	if rate > 0 {
		tickets = make(chan struct{}, conc)
		go func() {
			interval := time.Duration(float64(time.Second) / rate)
			next := time.Now()
			for time.Now().Before(deadline) && (n <= 0 || sent.Load() < n) {
				next = next.Add(interval)
				time.Sleep(time.Until(next))
				select {
				case tickets <- struct{}{}:
				default: // all workers busy: this request is not sent (counted as behind)
				}
			}
			close(tickets)
		}()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(deadline) {
				if tickets != nil {
					if _, open := <-tickets; !open {
						break
					}
				}
				if i := sent.Add(1); n > 0 && i > n {
					sent.Add(-1)
					break
				}
				t0 := time.Now()
				body, err := request(client, url, headers)
				d := time.Since(t0)
				if err != nil {
					errs.Add(1)
					mu.Lock()
					if firstErr == "" {
						firstErr = err.Error()
					}
					mu.Unlock()
					continue
				}
				ok.Add(1)
				mine = append(mine, d)
				first, _, _ := strings.Cut(body, "\n")
				mu.Lock()
				bodies[first]++
				mu.Unlock()
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	ms := make([]float64, len(lat))
	for i, d := range lat {
		ms[i] = float64(d.Microseconds()) / 1000
	}
	res := loadResult{Sent: sent.Load(), OK: ok.Load(), Errors: errs.Load(), Seconds: elapsed.Seconds(),
		RPS: float64(ok.Load()) / elapsed.Seconds(), P50ms: stats.Percentile(ms, 50), P99ms: stats.Percentile(ms, 99), Bodies: bodies}
	if res.Errors > 0 {
		res.Error = fmt.Sprintf("%d of %d requests failed; first: %s", res.Errors, res.Sent, firstErr)
	}
	return res
}

func request(client *http.Client, url string, headers headerFlags) (string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("HTTP %s", resp.Status)
	}
	return string(b), nil
}

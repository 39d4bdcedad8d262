package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"

	"github.com/doppel-dev/doppel/test/apps/internal/httpserve"
)

func serveCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 8080, "TCP port to listen on")
	name := fs.String("name", "", "who the answers say they are from (default: the host name)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	host := *name
	if host == "" {
		var err error
		if host, err = os.Hostname(); err != nil {
			fmt.Fprintf(stderr, "toolbox serve: %v\n", err)
			return 1
		}
	}
	h := httpserve.LogRequests(helloHandler(host, os.LookupEnv), stdout)
	if err := httpserve.Run(fmt.Sprintf(":%d", *port), h); err != nil {
		fmt.Fprintf(stderr, "toolbox serve: %v\n", err)
		return 1
	}
	return 0
}

// helloHandler answers who it is (the pod's hostname is the pod name) and
// what its environment holds, so tests can tell where a request landed.
func helloHandler(hostname string, lookupEnv func(string) (string, bool)) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", hostname)
	})
	mux.HandleFunc("GET /env/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		v, ok := lookupEnv(name)
		if !ok {
			http.Error(w, name+" is not set", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, v+"\n")
	})
	protocolHandlers(mux, hostname)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	// /bytes/N streams N MiB of zeros, for throughput benchmarks.
	mux.HandleFunc("GET /bytes/{mib}", func(w http.ResponseWriter, r *http.Request) {
		mib, err := strconv.Atoi(r.PathValue("mib"))
		if err != nil || mib < 0 || mib > 4096 {
			http.Error(w, "want 0..4096 MiB", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(mib<<20))
		buf := make([]byte, 1<<20)
		for i := 0; i < mib; i++ {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	})
	return mux
}

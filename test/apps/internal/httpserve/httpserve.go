// Package httpserve holds the HTTP plumbing shared by the test apps:
// graceful shutdown on SIGTERM and the per-request log line.
package httpserve

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Addr returns ":$PORT", or ":"+def when PORT is unset.
func Addr(def string) string {
	if p := os.Getenv("PORT"); p != "" {
		return ":" + p
	}
	return ":" + def
}

// Run serves h on addr until SIGTERM or SIGINT, then drains in-flight
// requests within the pods' 5s termination grace period.
func Run(addr string, h http.Handler) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	// Cleartext HTTP/2 too (prior knowledge), for gRPC-shaped traffic.
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("listening on %s", addr)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// LogRequests writes `Handling request URI=<RequestURI>` to w for every
// request except the probes (/healthz, /readyz), whose steady trickle would
// bury the traffic that demos and e2e tests look for — unless LOG_PROBES
// is set (a mirror test checks that the probes reach the local copy).
func LogRequests(next http.Handler, w io.Writer) http.Handler {
	logger := log.New(w, "", 0) // log.Logger serialises concurrent writes
	probes := os.Getenv("LOG_PROBES") != ""
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if probes || (r.URL.Path != "/healthz" && r.URL.Path != "/readyz") {
			logger.Printf("Handling request URI=%s", r.RequestURI)
		}
		next.ServeHTTP(rw, r)
	})
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/doppel-dev/doppel/test/apps/internal/httpserve"
)

// greeting is what GET / returns; the e2e tests match on it. GREETING
// replaces it, so that a copy run locally under doppel can be told apart.
const greeting = "This is a silly demo"

func greetingText() string {
	if g := os.Getenv("GREETING"); g != "" {
		return g
	}
	return greeting
}

// newHandler serves the backend API from store, logging application
// requests to logw.
func newHandler(store Store, logw io.Writer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, greetingText())
	})
	mux.HandleFunc("POST /video", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		for _, name := range []string{"id", "title"} {
			if q.Get(name) == "" {
				http.Error(w, "missing query parameter "+name, http.StatusBadRequest)
				return
			}
		}
		v, err := store.Add(r.Context(), q.Get("id"), q.Get("title"))
		if errors.Is(err, ErrDuplicate) {
			http.Error(w, fmt.Sprintf("video %q already exists", q.Get("id")), http.StatusConflict)
			return
		}
		if err != nil {
			dbError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, v)
	})
	mux.HandleFunc("GET /videos", func(w http.ResponseWriter, r *http.Request) {
		videos, err := store.List(r.Context())
		if err != nil {
			dbError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, videos)
	})
	// Liveness: must not touch the database, or a database hiccup would
	// get the pod restarted for nothing.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	// Readiness: take the pod out of the Service while the database is
	// unreachable.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := store.Ping(ctx); err != nil {
			http.Error(w, "database unreachable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return httpserve.LogRequests(mux, logw)
}

func dbError(w http.ResponseWriter, err error) {
	log.Printf("database error: %v", err)
	http.Error(w, "database error: "+err.Error(), http.StatusServiceUnavailable)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // a JSON API; keep titles readable in curl
	if err := enc.Encode(v); err != nil {
		log.Printf("write response: %v", err)
	}
}

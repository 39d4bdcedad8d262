package main

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log"
	"net/http"

	"github.com/doppel-dev/doppel/test/apps/internal/httpserve"
)

type addForm struct {
	ID, Title, Error string
}

func newHandler(b *backend, logw io.Writer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		greeting, err := b.Greeting(r.Context(), r.URL.Query().Get("user"))
		if err != nil {
			backendFailed(w, err)
			return
		}
		render(w, http.StatusOK, indexPage, struct{ Greeting string }{greeting})
	})
	mux.HandleFunc("GET /add", func(w http.ResponseWriter, r *http.Request) {
		render(w, http.StatusOK, addPage, addForm{})
	})
	mux.HandleFunc("POST /add", func(w http.ResponseWriter, r *http.Request) {
		f := addForm{ID: r.PostFormValue("id"), Title: r.PostFormValue("title")}
		if f.ID == "" || f.Title == "" {
			f.Error = "Both an ID and a title are needed."
			render(w, http.StatusBadRequest, addPage, f)
			return
		}
		v, err := b.AddVideo(r.Context(), f.ID, f.Title)
		if err != nil {
			backendFailed(w, err)
			return
		}
		render(w, http.StatusOK, addedPage, v)
	})
	mux.HandleFunc("GET /videos", func(w http.ResponseWriter, r *http.Request) {
		videos, err := b.Videos(r.Context())
		if err != nil {
			backendFailed(w, err)
			return
		}
		render(w, http.StatusOK, videosPage, videos)
	})
	// Only about this process: a backend outage should not restart us.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	return httpserve.LogRequests(mux, logw)
}

// backendFailed reports a failed backend call. A 4xx from the backend means
// the request was refused (say, a duplicate id), so the user sees that
// status and the backend's reason; anything else is the backend failing,
// hence 502 Bad Gateway.
func backendFailed(w http.ResponseWriter, err error) {
	log.Printf("backend call failed: %v", err)
	var se *statusError
	if errors.As(err, &se) && se.Code >= 400 && se.Code < 500 {
		render(w, se.Code, errorPage, "The backend refused the request: "+se.Body)
		return
	}
	render(w, http.StatusBadGateway, errorPage, "The backend is not working: "+err.Error())
}

// render executes t into a buffer first, so a template error cannot leave
// a half-written page behind a success status.
func render(w http.ResponseWriter, status int, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		log.Printf("render: %v", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

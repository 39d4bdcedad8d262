package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// fakeBackend stands in for the backend tier and records what it was asked.
type fakeBackend struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string // "METHOD RequestURI"
	greeting string
	videos   string // JSON for GET /videos
	status   int    // forced status for every call, when non-zero
}

func newFakeBackend(t *testing.T) *fakeBackend {
	f := &fakeBackend{greeting: "This is a silly demo\n", videos: "[]"}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.Method+" "+r.RequestURI)
		status := f.status
		f.mu.Unlock()
		if status != 0 {
			http.Error(w, fmt.Sprintf("forced %d", status), status)
			return
		}
		switch {
		case r.Method == "GET" && r.URL.Path == "/":
			io.WriteString(w, f.greeting)
		case r.Method == "GET" && r.URL.Path == "/videos":
			io.WriteString(w, f.videos)
		case r.Method == "POST" && r.URL.Path == "/video":
			q := r.URL.Query()
			if q.Get("id") == "dup" {
				http.Error(w, `video "dup" already exists`, http.StatusConflict)
				return
			}
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"id":%q,"title":%q,"created_at":"2024-05-06T07:08:09Z"}`, q.Get("id"), q.Get("title"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeBackend) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string{}, f.requests...)
}

func serve(h http.Handler, method, target string, form url.Values) *httptest.ResponseRecorder {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, target, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestIndexForwardsUser(t *testing.T) {
	be := newFakeBackend(t)
	var logs bytes.Buffer
	h := newHandler(newBackend(be.URL+"/"), &logs)

	rec := serve(h, "GET", "/?user=alice", nil)
	if rec.Code != 200 {
		t.Fatalf("GET / = %d %s", rec.Code, rec.Body)
	}
	body := rec.Body.String()
	for _, want := range []string{"<h1>This is a silly demo</h1>", `href="/add"`, `href="/videos"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	serve(h, "GET", "/", nil)
	if got, want := be.calls(), []string{"GET /?user=alice", "GET /"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("backend saw %q, want %q", got, want)
	}
	if got := logs.String(); got != "Handling request URI=/?user=alice\nHandling request URI=/\n" {
		t.Errorf("log = %q", got)
	}
}

func TestEscaping(t *testing.T) {
	be := newFakeBackend(t)
	be.greeting = `<script>alert("x")</script>`
	be.videos = `[{"id":"<b>1</b>","title":"Tom & \"Jerry\"","created_at":"2024-05-06T07:08:09Z"}]`
	h := newHandler(newBackend(be.URL), io.Discard)

	for _, target := range []string{"/", "/videos"} {
		body := serve(h, "GET", target, nil).Body.String()
		if strings.Contains(body, "<script>") || strings.Contains(body, "<b>1</b>") {
			t.Errorf("GET %s did not escape backend data:\n%s", target, body)
		}
	}
	body := serve(h, "GET", "/videos", nil).Body.String()
	for _, want := range []string{"&lt;b&gt;1&lt;/b&gt;", "Tom &amp; &#34;Jerry&#34;", "2024-05-06 07:08:09 UTC", "<table>"} {
		if !strings.Contains(body, want) {
			t.Errorf("/videos lacks %q:\n%s", want, body)
		}
	}
}

func TestEmptyList(t *testing.T) {
	h := newHandler(newBackend(newFakeBackend(t).URL), io.Discard)
	if body := serve(h, "GET", "/videos", nil).Body.String(); !strings.Contains(body, "No videos yet") {
		t.Errorf("empty list page:\n%s", body)
	}
}

func TestAdd(t *testing.T) {
	be := newFakeBackend(t)
	h := newHandler(newBackend(be.URL), io.Discard)

	if rec := serve(h, "GET", "/add", nil); rec.Code != 200 || !strings.Contains(rec.Body.String(), `<form method="post" action="/add">`) {
		t.Errorf("GET /add = %d\n%s", rec.Code, rec.Body)
	}
	rec := serve(h, "POST", "/add", url.Values{"id": {"a b&c"}, "title": {"<Fish> & chips"}})
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "&lt;Fish&gt; &amp; chips") {
		t.Errorf("POST /add = %d\n%s", rec.Code, rec.Body)
	}
	if got := be.calls(); len(got) != 1 || got[0] != "POST /video?id=a+b%26c&title=%3CFish%3E+%26+chips" {
		t.Errorf("backend saw %q", got)
	}
}

func TestAddMissingField(t *testing.T) {
	be := newFakeBackend(t)
	h := newHandler(newBackend(be.URL), io.Discard)
	rec := serve(h, "POST", "/add", url.Values{"id": {"x"}})
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "Both an ID and a title") || !strings.Contains(rec.Body.String(), `value="x"`) {
		t.Errorf("POST /add without title = %d\n%s", rec.Code, rec.Body)
	}
	if len(be.calls()) != 0 {
		t.Errorf("backend called for an incomplete form: %q", be.calls())
	}
}

func TestBackendRefuses(t *testing.T) {
	h := newHandler(newBackend(newFakeBackend(t).URL), io.Discard)
	rec := serve(h, "POST", "/add", url.Values{"id": {"dup"}, "title": {"t"}})
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "already exists") {
		t.Errorf("duplicate = %d\n%s", rec.Code, rec.Body)
	}
}

func TestBackendBroken(t *testing.T) {
	be := newFakeBackend(t)
	be.status = http.StatusServiceUnavailable
	h := newHandler(newBackend(be.URL), io.Discard)
	for _, target := range []string{"/", "/videos"} {
		rec := serve(h, "GET", target, nil)
		if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "The backend is not working") {
			t.Errorf("GET %s with backend 503 = %d\n%s", target, rec.Code, rec.Body)
		}
	}

	be.Close() // now nothing listens there
	rec := serve(h, "GET", "/", nil)
	if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "The backend is not working") {
		t.Errorf("GET / with backend down = %d\n%s", rec.Code, rec.Body)
	}
}

func TestBadJSON(t *testing.T) {
	be := newFakeBackend(t)
	be.videos = "not json"
	h := newHandler(newBackend(be.URL), io.Discard)
	if rec := serve(h, "GET", "/videos", nil); rec.Code != http.StatusBadGateway {
		t.Errorf("bad JSON = %d\n%s", rec.Code, rec.Body)
	}
}

func TestHealthzNeedsNoBackend(t *testing.T) {
	be := newFakeBackend(t)
	be.Close()
	h := newHandler(newBackend(be.URL), io.Discard)
	if rec := serve(h, "GET", "/healthz", nil); rec.Code != 200 {
		t.Errorf("/healthz = %d", rec.Code)
	}
}

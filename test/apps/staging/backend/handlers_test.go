package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type testServer struct {
	store *fakeStore
	log   *bytes.Buffer
	h     http.Handler
}

func newTestServer() *testServer {
	s := &testServer{
		store: &fakeStore{now: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
		log:   &bytes.Buffer{},
	}
	s.h = newHandler(s.store, s.log)
	return s
}

func (s *testServer) do(method, uri string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, httptest.NewRequest(method, uri, nil))
	return rec
}

func TestGreeting(t *testing.T) {
	s := newTestServer()
	rec := s.do("GET", "/?user=alice")
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != "This is a silly demo" {
		t.Fatalf("GET / = %d %q", rec.Code, rec.Body.String())
	}
	if got, want := s.log.String(), "Handling request URI=/?user=alice\n"; got != want {
		t.Errorf("log = %q, want %q", got, want)
	}
	if rec := s.do("GET", "/nope"); rec.Code != http.StatusNotFound {
		t.Errorf("GET /nope = %d, want 404", rec.Code)
	}
}

func TestAddAndList(t *testing.T) {
	s := newTestServer()
	rec := s.do("POST", "/video?id=v1&title=First%20one")
	if rec.Code != http.StatusCreated {
		t.Fatalf("POST /video = %d %s", rec.Code, rec.Body)
	}
	var got Video
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != "v1" || got.Title != "First one" || got.CreatedAt.IsZero() {
		t.Errorf("created %+v", got)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	s.do("POST", "/video?id=v2&title=Second")

	rec = s.do("GET", "/videos")
	if rec.Code != 200 {
		t.Fatalf("GET /videos = %d %s", rec.Code, rec.Body)
	}
	var list []Video
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "v1" || list[1].ID != "v2" {
		t.Errorf("list = %+v", list)
	}
	// The wire names are part of the API the frontend reads.
	if !strings.Contains(rec.Body.String(), `"created_at":"2024-01-02T03:04:06Z"`) {
		t.Errorf("unexpected JSON %s", rec.Body)
	}
}

func TestListEmptyIsArray(t *testing.T) {
	s := newTestServer()
	s.store.videos = []Video{}
	rec := s.do("GET", "/videos")
	if strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Errorf("empty list = %q, want []", rec.Body.String())
	}
}

func TestAddErrors(t *testing.T) {
	for _, tc := range []struct {
		uri      string
		code     int
		mentions string
	}{
		{"/video?title=x", 400, "id"},
		{"/video?id=x", 400, "title"},
		{"/video?id=&title=", 400, "id"},
	} {
		rec := newTestServer().do("POST", tc.uri)
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), "missing query parameter "+tc.mentions) {
			t.Errorf("POST %s = %d %q, want %d naming %q", tc.uri, rec.Code, rec.Body, tc.code, tc.mentions)
		}
	}

	s := newTestServer()
	s.do("POST", "/video?id=dup&title=a")
	if rec := s.do("POST", "/video?id=dup&title=b"); rec.Code != http.StatusConflict {
		t.Errorf("duplicate = %d %s, want 409", rec.Code, rec.Body)
	}
	if rec := s.do("GET", "/video?id=a&title=b"); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET /video = %d, want 405", rec.Code)
	}
}

func TestDatabaseDown(t *testing.T) {
	s := newTestServer()
	s.store.err = errors.New("connection refused")
	s.store.pingErr = s.store.err
	for _, req := range [][2]string{{"POST", "/video?id=a&title=b"}, {"GET", "/videos"}, {"GET", "/readyz"}} {
		if rec := s.do(req[0], req[1]); rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%s %s with DB down = %d, want 503", req[0], req[1], rec.Code)
		}
	}
	// Liveness must not depend on the database.
	if rec := s.do("GET", "/healthz"); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != "ok" {
		t.Errorf("/healthz with DB down = %d %q", rec.Code, rec.Body)
	}
	if strings.Contains(s.log.String(), "healthz") || strings.Contains(s.log.String(), "readyz") {
		t.Errorf("probes were logged: %q", s.log)
	}
}

func TestReady(t *testing.T) {
	if rec := newTestServer().do("GET", "/readyz"); rec.Code != 200 {
		t.Errorf("/readyz = %d", rec.Code)
	}
}

func TestDSNFromEnv(t *testing.T) {
	env := map[string]string{
		"DB_HOST": "postgres", "DB_USER": "app", "DB_PASSWORD": `p w'\`, "DB_NAME": "videos",
	}
	got := dsnFromEnv(func(k string) string { return env[k] })
	want := `host='postgres' port='5432' user='app' password='p w\'\\' dbname='videos' sslmode='disable' connect_timeout='5'`
	if got != want {
		t.Errorf("dsn =\n %s\nwant\n %s", got, want)
	}
	env["DB_PORT"] = "6543"
	if got := dsnFromEnv(func(k string) string { return env[k] }); !strings.Contains(got, "port='6543'") {
		t.Errorf("DB_PORT ignored: %s", got)
	}
}

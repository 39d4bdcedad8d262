package httpserve

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestLogRequests(t *testing.T) {
	var buf bytes.Buffer
	h := LogRequests(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), &buf)
	for _, uri := range []string{"/?user=alice", "/healthz", "/readyz", "/video?id=1&title=a%20b"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", uri, nil))
	}
	want := "Handling request URI=/?user=alice\nHandling request URI=/video?id=1&title=a%20b\n"
	if buf.String() != want {
		t.Errorf("log = %q, want %q", buf.String(), want)
	}
}

func TestAddr(t *testing.T) {
	t.Setenv("PORT", "")
	if got := Addr("8080"); got != ":8080" {
		t.Errorf("Addr default = %q", got)
	}
	t.Setenv("PORT", "9000")
	if got := Addr("8080"); got != ":9000" {
		t.Errorf("Addr with PORT = %q", got)
	}
}

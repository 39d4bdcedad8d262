package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Video is a row as the backend's JSON has it.
type Video struct {
	ID        string    `json:"id"`
	Title     string    `json:"title"`
	CreatedAt time.Time `json:"created_at"`
}

// backend is a client of the backend tier's HTTP API.
type backend struct {
	base   string // e.g. http://backend, no trailing slash
	client *http.Client
}

func newBackend(base string) *backend {
	return &backend{
		base:   strings.TrimRight(base, "/"),
		client: &http.Client{Timeout: 10 * time.Second},
	}
}

// statusError is a non-2xx answer from the backend.
type statusError struct {
	Code int
	Body string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("backend answered %d %s: %s", e.Code, http.StatusText(e.Code), e.Body)
}

// Greeting returns the backend's greeting. user, when set, is passed on as
// ?user=, so traffic for one user can be told apart at the backend.
func (b *backend) Greeting(ctx context.Context, user string) (string, error) {
	q := url.Values{}
	if user != "" {
		q.Set("user", user)
	}
	body, err := b.do(ctx, http.MethodGet, "/", q)
	return strings.TrimSpace(string(body)), err
}

func (b *backend) AddVideo(ctx context.Context, id, title string) (Video, error) {
	var v Video
	body, err := b.do(ctx, http.MethodPost, "/video", url.Values{"id": {id}, "title": {title}})
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return v, fmt.Errorf("backend sent bad JSON: %w", err)
	}
	return v, nil
}

func (b *backend) Videos(ctx context.Context) ([]Video, error) {
	var vs []Video
	body, err := b.do(ctx, http.MethodGet, "/videos", nil)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(body, &vs); err != nil {
		return nil, fmt.Errorf("backend sent bad JSON: %w", err)
	}
	return vs, nil
}

func (b *backend) do(ctx context.Context, method, path string, q url.Values) ([]byte, error) {
	u := b.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &statusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	return body, nil
}

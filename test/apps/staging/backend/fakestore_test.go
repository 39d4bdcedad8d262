package main

import (
	"context"
	"sync"
	"time"
)

// fakeStore is an in-memory Store for handler tests.
type fakeStore struct {
	mu      sync.Mutex
	videos  []Video
	err     error // returned by every call when set
	pingErr error
	now     time.Time
}

func (f *fakeStore) Add(_ context.Context, id, title string) (Video, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return Video{}, f.err
	}
	for _, v := range f.videos {
		if v.ID == id {
			return Video{}, ErrDuplicate
		}
	}
	f.now = f.now.Add(time.Second)
	v := Video{ID: id, Title: title, CreatedAt: f.now}
	f.videos = append(f.videos, v)
	return v, nil
}

func (f *fakeStore) List(context.Context) ([]Video, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return append([]Video{}, f.videos...), nil
}

func (f *fakeStore) Ping(context.Context) error { return f.pingErr }

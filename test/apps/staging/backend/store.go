package main

import (
	"context"
	"errors"
	"time"
)

// Video is one row of the videos table.
type Video struct {
	ID        string    `json:"id"`
	Title     string    `json:"title"`
	CreatedAt time.Time `json:"created_at"`
}

// ErrDuplicate is returned by Store.Add when the id is taken.
var ErrDuplicate = errors.New("video id already exists")

// Store is what the handlers need from the database; an interface so the
// handlers can be tested against an in-memory fake.
type Store interface {
	Add(ctx context.Context, id, title string) (Video, error)
	// List returns all videos, oldest first.
	List(ctx context.Context) ([]Video, error)
	Ping(ctx context.Context) error
}

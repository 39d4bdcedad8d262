package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/test/apps/internal/pgtest"
)

// TestPGStore runs the SQL against a real, throw-away Postgres.
func TestPGStore(t *testing.T) {
	srv := pgtest.Start(t)
	store, err := openPGStore(srv.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if err := store.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	// List first: the schema must be created by whichever call comes first.
	if list, err := store.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("List on empty db = %v, %v", list, err)
	}
	a, err := store.Add(ctx, "a", "It's \"quoted\"")
	if err != nil {
		t.Fatal(err)
	}
	if a.CreatedAt.IsZero() || time.Since(a.CreatedAt) > time.Minute {
		t.Errorf("created_at = %v", a.CreatedAt)
	}
	if _, err := store.Add(ctx, "b", "second"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Add(ctx, "a", "again"); !errors.Is(err, ErrDuplicate) {
		t.Errorf("duplicate Add = %v, want ErrDuplicate", err)
	}
	list, err := store.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "a" || list[0].Title != `It's "quoted"` || list[1].ID != "b" {
		t.Errorf("List = %+v", list)
	}
	if !list[0].CreatedAt.Equal(a.CreatedAt) {
		t.Errorf("listed created_at %v != inserted %v", list[0].CreatedAt, a.CreatedAt)
	}
}

// TestPGStoreDatabaseDown checks that a store pointed at nothing fails per
// call instead of at start, so the pod comes up before Postgres does.
func TestPGStoreDatabaseDown(t *testing.T) {
	store, err := openPGStore("host=" + t.TempDir() + " sslmode=disable connect_timeout=2")
	if err != nil {
		t.Fatalf("open must not dial: %v", err)
	}
	defer store.db.Close()
	ctx := context.Background()
	if err := store.Ping(ctx); err == nil {
		t.Error("Ping succeeded with no server")
	}
	if _, err := store.List(ctx); err == nil {
		t.Error("List succeeded with no server")
	}
	if store.migrated {
		t.Error("schema marked as applied without a server")
	}
}

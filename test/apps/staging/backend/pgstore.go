package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/doppel-dev/doppel/test/apps/staging/internal/schema"
	"github.com/lib/pq"
)

// pgStore is the Postgres Store. database/sql connects lazily and redials
// on every use, so the backend starts (and serves /healthz) while Postgres
// is still coming up; the schema is applied on the first successful use.
type pgStore struct {
	db *sql.DB

	mu       sync.Mutex
	migrated bool
}

func openPGStore(dsn string) (*pgStore, error) {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return nil, err
	}
	return &pgStore{db: db}, nil
}

// ready makes sure the videos table exists. It retries on every call until
// it succeeds once, so a database that was not up yet is picked up later.
func (s *pgStore) ready(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.migrated {
		return nil
	}
	if _, err := s.db.ExecContext(ctx, schema.SQL); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	s.migrated = true
	return nil
}

func (s *pgStore) Add(ctx context.Context, id, title string) (Video, error) {
	if err := s.ready(ctx); err != nil {
		return Video{}, err
	}
	v := Video{ID: id, Title: title}
	err := s.db.QueryRowContext(ctx,
		`INSERT INTO videos (id, title) VALUES ($1, $2) RETURNING created_at`, id, title).
		Scan(&v.CreatedAt)
	var pqErr *pq.Error
	if errors.As(err, &pqErr) && pqErr.Code == "23505" { // unique_violation
		return Video{}, ErrDuplicate
	}
	if err != nil {
		return Video{}, fmt.Errorf("insert video: %w", err)
	}
	return v, nil
}

func (s *pgStore) List(ctx context.Context) ([]Video, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx,
		`SELECT id, title, created_at FROM videos ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list videos: %w", err)
	}
	defer rows.Close()
	videos := []Video{}
	for rows.Next() {
		var v Video
		if err := rows.Scan(&v.ID, &v.Title, &v.CreatedAt); err != nil {
			return nil, err
		}
		videos = append(videos, v)
	}
	return videos, rows.Err()
}

func (s *pgStore) Ping(ctx context.Context) error {
	return s.db.PingContext(ctx)
}

// dsnFromEnv builds a lib/pq connection string from DB_HOST, DB_PORT
// (default 5432), DB_USER, DB_PASSWORD and DB_NAME. Cluster-internal
// traffic is plain TCP, hence sslmode=disable.
func dsnFromEnv(getenv func(string) string) string {
	port := getenv("DB_PORT")
	if port == "" {
		port = "5432"
	}
	params := []struct{ key, value string }{
		{"host", getenv("DB_HOST")},
		{"port", port},
		{"user", getenv("DB_USER")},
		{"password", getenv("DB_PASSWORD")},
		{"dbname", getenv("DB_NAME")},
		{"sslmode", "disable"},
		{"connect_timeout", "5"},
	}
	var parts []string
	for _, p := range params {
		if p.value != "" {
			parts = append(parts, p.key+"="+quoteDSN(p.value))
		}
	}
	return strings.Join(parts, " ")
}

// quoteDSN quotes a key=value connection-string value, so passwords with
// spaces or quotes survive.
func quoteDSN(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

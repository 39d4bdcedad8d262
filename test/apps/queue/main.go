// Command queue is a queue consumer for the pause tests (docs/pause.md):
// it takes rows from the Postgres table jobs with SELECT … FOR UPDATE SKIP
// LOCKED, one at a time, and marks each with its consumer name. Several
// consumers share the queue without taking a row twice.
//
//	queue [-name NAME] [-interval 100ms]
//
// The database comes from DB_HOST, DB_PORT, DB_USER, DB_PASSWORD and
// DB_NAME; the name defaults to $CONSUMER_NAME, then the hostname.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	_ "github.com/lib/pq"
)

const schema = `CREATE TABLE IF NOT EXISTS jobs (
	id          bigserial PRIMARY KEY,
	payload     text NOT NULL DEFAULT '',
	consumer    text,
	consumed_at timestamptz
)`

func main() {
	name := flag.String("name", "", "consumer name (default $CONSUMER_NAME, then the hostname)")
	interval := flag.Duration("interval", 100*time.Millisecond, "pause between polls of an empty queue")
	flag.Parse()
	if *name == "" {
		*name = os.Getenv("CONSUMER_NAME")
	}
	if *name == "" {
		*name, _ = os.Hostname()
	}
	db, err := sql.Open("postgres", dsn(os.Getenv))
	if err != nil {
		log.Fatal(err)
	}
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.Printf("consumer %s starting", *name)
	ctx := context.Background()
	migrated := false
	for {
		if !migrated {
			if _, err := db.ExecContext(ctx, schema); err != nil {
				log.Printf("schema: %v", err)
				time.Sleep(time.Second)
				continue
			}
			migrated = true
			log.Printf("consumer %s ready", *name)
		}
		id, err := take(ctx, db, *name)
		switch {
		case err != nil:
			log.Printf("take: %v", err)
			time.Sleep(*interval)
		case id == 0:
			time.Sleep(*interval)
		default:
			fmt.Printf("consumed %d by %s\n", id, *name)
		}
	}
}

// take marks the oldest free row as name's and returns its id (0: none).
func take(ctx context.Context, db *sql.DB, name string) (int64, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var id int64
	err = tx.QueryRowContext(ctx, `SELECT id FROM jobs WHERE consumer IS NULL ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED`).Scan(&id)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE jobs SET consumer = $1, consumed_at = now() WHERE id = $2`, name, id); err != nil {
		return 0, err
	}
	return id, tx.Commit()
}

func dsn(getenv func(string) string) string {
	port := getenv("DB_PORT")
	if port == "" {
		port = "5432"
	}
	var parts []string
	for _, p := range [][2]string{{"host", getenv("DB_HOST")}, {"port", port}, {"user", getenv("DB_USER")},
		{"password", getenv("DB_PASSWORD")}, {"dbname", getenv("DB_NAME")}, {"sslmode", "disable"}, {"connect_timeout", "5"}} {
		if p[1] != "" {
			parts = append(parts, p[0]+"='"+strings.ReplaceAll(strings.ReplaceAll(p[1], `\`, `\\`), `'`, `\'`)+"'")
		}
	}
	return strings.Join(parts, " ")
}

package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/internal/testnet"
	"github.com/doppel-dev/doppel/test/apps/internal/pgtest"
)

const testPassword = "s3cret 'pw'"

// TestInitAndRestart runs the real binary as the postgres user against a
// directory shaped like an emptyDir volume, twice: a fresh init, then a
// restart on the existing cluster.
func TestInitAndRestart(t *testing.T) {
	pgBin := pgtest.Bin(t)
	o := pgtest.RunAs(t)
	dir := o.Dir(t)
	bin := buildInit(t, dir)

	pgdata := filepath.Join(dir, "data")
	if os.Geteuid() == 0 {
		// What kubelet makes of an emptyDir with fsGroup: root's, setgid,
		// writable by the group (and everyone).
		mustMkdir(t, pgdata, 0o2777)
		if err := os.Chown(pgdata, 0, o.GID); err != nil {
			t.Fatal(err)
		}
	} else {
		mustMkdir(t, pgdata, 0o700)
	}
	port := freePort(t)
	start := func() *pgtest.Process {
		cmd := o.Command(bin, "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+dir, "-p", fmt.Sprint(port))
		cmd.Env = []string{
			"PATH=/usr/bin:/bin",
			"PG_BIN=" + pgBin,
			"PGDATA=" + pgdata,
			"POSTGRES_USER=app",
			"POSTGRES_PASSWORD=" + testPassword,
			"POSTGRES_DB=videos",
		}
		p := pgtest.StartProcess(t, cmd)
		pgtest.WaitReady(t, p, fmt.Sprintf("host=%s port=%d user=app dbname=videos sslmode=disable", dir, port))
		return p
	}

	p := start()
	// syscall.Exec keeps the PID: the process we started is now the server.
	if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID())); !strings.HasPrefix(string(cmdline), filepath.Join(pgBin, "postgres")+"\x00-D\x00") {
		t.Errorf("pid %d runs %q, want the postgres server", p.PID(), cmdline)
	}
	if os.Geteuid() == 0 {
		if _, err := os.Stat(filepath.Join(pgdata, "pgdata", "PG_VERSION")); err != nil {
			t.Errorf("cluster not in the pgdata subdirectory of the foreign-owned PGDATA: %v", err)
		}
	}
	db := openTCP(t, port, testPassword)
	if _, err := db.Exec(`INSERT INTO videos (id, title) VALUES ('v1', 'kept')`); err != nil {
		t.Fatalf("insert over TCP: %v", err)
	}
	var owner string
	if err := db.QueryRow(`SELECT tableowner FROM pg_tables WHERE tablename = 'videos'`).Scan(&owner); err != nil || owner != "app" {
		t.Errorf("videos owner = %q, %v; want app", owner, err)
	}
	if err := openTCP(t, port, "wrong").Ping(); err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Errorf("wrong password: %v, want password authentication failure", err)
	}
	db.Close()
	p.Stop(t)

	start()
	var title string
	if err := openTCP(t, port, testPassword).QueryRow(`SELECT title FROM videos WHERE id = 'v1'`).Scan(&title); err != nil || title != "kept" {
		t.Errorf("after restart: title = %q, %v", title, err)
	}
}

// buildInit builds the static binary into dir, where the postgres user can
// run it (the test binary's own directory is root's and private).
func buildInit(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "postgres-init")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int { return testnet.FreePort(t) }

// openTCP connects the way the backend does: TCP and a scram password.
func openTCP(t *testing.T, port int, password string) *sql.DB {
	t.Helper()
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=app password='%s' dbname=videos sslmode=disable connect_timeout=5",
		port, strings.ReplaceAll(password, "'", `\'`))
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = db.PingContext(ctx) // callers check the error that matters to them
	return db
}

// mustMkdir creates dir with exactly mode, given as raw st_mode bits
// (os.Chmod would drop a raw setgid or sticky bit, and mkdir applies umask).
func mustMkdir(t *testing.T, dir string, mode uint32) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

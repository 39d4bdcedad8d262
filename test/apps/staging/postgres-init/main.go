// Command postgres-init is the entrypoint of the staging Postgres image. It
// initialises a cluster on first start (user, password, database, schema),
// then execs the server so that it is PID 1 and receives the pod's signals.
//
// Any arguments are appended to the server's command line; later -c options
// win, so tests can override listen_addresses or the socket directory.
package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"syscall"
)

func main() {
	log.SetPrefix("postgres-init: ")
	log.SetFlags(0)
	cfg, err := loadConfig(os.Getenv, os.Args[1:], os.Geteuid())
	if err != nil {
		log.Fatal(err)
	}
	if err := setup(cfg); err != nil {
		log.Fatal(err)
	}
	argv := serverArgs(cfg)
	log.Printf("starting %v", argv)
	// The password has done its job; keep it out of the server's environ.
	os.Unsetenv("POSTGRES_PASSWORD")
	log.Fatal(syscall.Exec(argv[0], argv, os.Environ()))
}

// setup brings the data directory to a state the server can start from.
// Every step is idempotent, so a pod killed half-way through recovers on
// its next start.
func setup(cfg config) error {
	if _, err := os.Stat(filepath.Join(cfg.data, "PG_VERSION")); os.IsNotExist(err) {
		log.Printf("initialising cluster in %s", cfg.data)
		if err := initdb(cfg); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cfg.data, "pg_hba.conf"), []byte(hbaConf), 0o600); err != nil {
		return fmt.Errorf("write pg_hba.conf: %w", err)
	}
	if err := createDatabase(cfg); err != nil {
		return err
	}
	return createSchema(cfg)
}

// serverArgs is the server's argv: listen on all addresses for the
// Service, with the socket in /tmp because the image has no
// /var/run/postgresql (Debian's compiled-in default). argv[0] is the full
// path: the server finds its lib and share directories from it, and searches
// $PATH for a bare "postgres" (which the image's PATH does not reach).
func serverArgs(cfg config) []string {
	args := []string{filepath.Join(cfg.bin, "postgres"), "-D", cfg.data,
		"-c", "listen_addresses=*",
		"-c", "unix_socket_directories=/tmp"}
	return append(args, cfg.extraArgs...)
}

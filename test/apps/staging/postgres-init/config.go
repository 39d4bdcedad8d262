package main

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

type config struct {
	bin       string // directory of initdb and postgres
	data      string // the cluster's data directory
	user      string // superuser created by initdb
	password  string
	db        string
	extraArgs []string // appended to the server's command line
}

// loadConfig reads PG_BIN, PGDATA and POSTGRES_{USER,PASSWORD,DB}, with the
// official postgres image's defaults (user postgres, db named after user).
func loadConfig(getenv func(string) string, args []string, euid int) (config, error) {
	if euid == 0 {
		return config{}, errors.New("postgres refuses to run as root; run the container as the postgres user (securityContext.runAsUser)")
	}
	cfg := config{
		bin:       orDefault(getenv("PG_BIN"), "/usr/lib/postgresql/15/bin"),
		user:      orDefault(getenv("POSTGRES_USER"), "postgres"),
		password:  getenv("POSTGRES_PASSWORD"),
		extraArgs: args,
	}
	cfg.db = orDefault(getenv("POSTGRES_DB"), cfg.user)
	if cfg.password == "" {
		return config{}, errors.New("POSTGRES_PASSWORD is required: remote logins use scram-sha-256")
	}
	if strings.ContainsAny(cfg.password, "\r\n") {
		return config{}, errors.New("POSTGRES_PASSWORD must be a single line (initdb reads it from a file's first line)")
	}
	data, err := dataDir(orDefault(getenv("PGDATA"), "/var/lib/postgresql/data"), euid)
	if err != nil {
		return config{}, err
	}
	cfg.data = data
	return cfg, nil
}

// dataDir picks the cluster directory for $PGDATA. Postgres insists on
// owning its data directory with mode 0700, which it cannot arrange for a
// directory someone else owns, such as an emptyDir volume's root (owned by
// root, group fsGroup, mode 2777). In that case the cluster goes one level
// down, in a directory this process creates and owns.
func dataDir(pgdata string, euid int) (string, error) {
	fi, err := os.Stat(pgdata)
	if os.IsNotExist(err) {
		return pgdata, nil
	}
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("PGDATA %s is not a directory", pgdata)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) == euid {
		return pgdata, nil
	}
	sub := filepath.Join(pgdata, "pgdata")
	log.Printf("%s is owned by uid %d, not us (%d): using %s", pgdata, st.Uid, euid, sub)
	return sub, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/doppel-dev/doppel/test/apps/staging/internal/schema"
)

// hbaConf replaces initdb's pg_hba.conf: password logins from anywhere (the
// Service), and trust over the socket, which only this container can reach.
const hbaConf = `# Written by postgres-init.
local all all                trust
host  all all 0.0.0.0/0      scram-sha-256
host  all all ::/0           scram-sha-256
`

// initdb creates the cluster. The password goes through a file so it never
// shows up in a process listing.
func initdb(cfg config) error {
	pw, err := os.CreateTemp("", "pwfile")
	if err != nil {
		return err
	}
	defer os.Remove(pw.Name())
	_, err = pw.WriteString(cfg.password + "\n")
	if cerr := pw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// initdb would not create a missing parent, e.g. the data directory
	// picked inside an emptyDir.
	if err := os.MkdirAll(cfg.data, 0o700); err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(cfg.bin, "initdb"),
		"-D", cfg.data,
		"--username="+cfg.user,
		"--pwfile="+pw.Name(),
		"--auth=scram-sha-256",
		// C locale: the image ships no locale data.
		"--locale=C", "--encoding=UTF8")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	return nil
}

// createDatabase creates cfg.db unless initdb already made it. It runs on
// every start; "already exists" is the normal answer after the first.
func createDatabase(cfg config) error {
	switch cfg.db {
	case "postgres", "template0", "template1":
		return nil
	}
	sql := fmt.Sprintf("CREATE DATABASE %s OWNER %s;", quoteIdent(cfg.db), quoteIdent(cfg.user))
	return singleUser(cfg, "postgres", sql, alreadyExists)
}

// createSchema applies the staging schema to cfg.db as cfg.user (the
// single-user backend runs as the bootstrap superuser, which is cfg.user).
func createSchema(cfg config) error {
	return singleUser(cfg, cfg.db, schema.SQL, nil)
}

var alreadyExists = regexp.MustCompile(`ERROR:  database ".*" already exists`)

// singleUser feeds sql to a single-user backend on database db. Such a
// backend reports SQL errors only in its log and still exits 0, so the log
// is scanned for them; lines matching ignore are expected and not errors.
func singleUser(cfg config, db, sql string, ignore *regexp.Regexp) error {
	// -j: a command ends at ";" plus an empty line, so SQL may span lines.
	cmd := exec.Command(filepath.Join(cfg.bin, "postgres"), "--single", "-j", "-D", cfg.data, db)
	cmd.Stdin = strings.NewReader(sql + "\n\n")
	// Its log is shown only on failure: on every restart it would say
	// ERROR for the database that already exists, which misleads readers.
	var logs bytes.Buffer
	cmd.Stdout = io.Discard // the "backend>" prompts and result rows
	cmd.Stderr = &logs
	err := cmd.Run()
	if errs := errorLines(logs.String(), ignore); err == nil && len(errs) > 0 {
		err = errors.New(strings.Join(errs, "; "))
	}
	if err != nil {
		os.Stderr.Write(logs.Bytes())
		return fmt.Errorf("postgres --single %s: %w", db, err)
	}
	return nil
}

var severe = regexp.MustCompile(`\b(ERROR|FATAL|PANIC):  `)

// errorLines returns the log lines reporting an error, minus ignored ones.
func errorLines(log string, ignore *regexp.Regexp) []string {
	var errs []string
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		line := sc.Text()
		if severe.MatchString(line) && (ignore == nil || !ignore.MatchString(line)) {
			errs = append(errs, line)
		}
	}
	return errs
}

// quoteIdent quotes a SQL identifier, so any POSTGRES_USER/POSTGRES_DB works.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

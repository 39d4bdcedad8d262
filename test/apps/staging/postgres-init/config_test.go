package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	pgdata := filepath.Join(t.TempDir(), "missing")
	cfg, err := loadConfig(env(map[string]string{"POSTGRES_PASSWORD": "pw", "PGDATA": pgdata}), []string{"-p", "1"}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	want := config{bin: "/usr/lib/postgresql/15/bin", data: pgdata, user: "postgres", password: "pw", db: "postgres", extraArgs: []string{"-p", "1"}}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("cfg = %+v\nwant %+v", cfg, want)
	}
	cfg, err = loadConfig(env(map[string]string{"POSTGRES_PASSWORD": "pw", "POSTGRES_USER": "app", "PGDATA": pgdata}), nil, 1000)
	if err != nil || cfg.db != "app" {
		t.Errorf("POSTGRES_DB should default to the user: %+v, %v", cfg, err)
	}
}

func TestLoadConfigRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		env  map[string]string
		euid int
		want string
	}{
		"root":             {map[string]string{"POSTGRES_PASSWORD": "pw"}, 0, "runAsUser"},
		"no password":      {map[string]string{}, 1000, "POSTGRES_PASSWORD is required"},
		"multiline secret": {map[string]string{"POSTGRES_PASSWORD": "a\nb"}, 1000, "single line"},
	} {
		_, err := loadConfig(env(tc.env), nil, tc.euid)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want mention of %q", name, err, tc.want)
		}
	}
}

func TestDataDir(t *testing.T) {
	dir := t.TempDir()
	me := os.Geteuid()
	if got, _ := dataDir(filepath.Join(dir, "new"), me); got != filepath.Join(dir, "new") {
		t.Errorf("missing dir: got %s", got)
	}
	if got, _ := dataDir(dir, me); got != dir {
		t.Errorf("own dir: got %s", got)
	}
	// Someone else's directory, like an emptyDir root: go one level down.
	if got, _ := dataDir(dir, me+1); got != filepath.Join(dir, "pgdata") {
		t.Errorf("foreign dir: got %s", got)
	}
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o600)
	if _, err := dataDir(file, me); err == nil {
		t.Error("a file as PGDATA was accepted")
	}
}

func TestServerArgs(t *testing.T) {
	got := serverArgs(config{bin: "/pg/bin", data: "/d", extraArgs: []string{"-c", "listen_addresses="}})
	want := []string{"/pg/bin/postgres", "-D", "/d", "-c", "listen_addresses=*", "-c", "unix_socket_directories=/tmp", "-c", "listen_addresses="}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("args = %q", got)
	}
}

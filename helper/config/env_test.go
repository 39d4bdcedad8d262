package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestEnvFilter(t *testing.T) {
	remote := map[string]string{
		"DB_HOST":           "postgres.staging",
		"DB_PASSWORD":       "s3cret",
		"PATH":              "/usr/local/sbin:/app/bin",
		"HOME":              "/root",
		"HOSTNAME":          "backend-5d9c",
		"LC_ALL":            "C.UTF-8",
		"JAVA_TOOL_OPTIONS": "-javaagent:/otel.jar",
		"API_TIMEOUT":       "30",
		"REGION":            "eu-1",
	}
	local := []string{"PATH=/usr/bin", "HOME=/home/dev", "AWS_PROFILE=dev", "TERM=xterm", "REGION=local", "EDITOR=vim"}

	for _, tc := range []struct {
		name   string
		config string
		want   []string
	}{
		{
			name:   "default: the target's variables minus the local machine's",
			config: "{}",
			want: []string{"API_TIMEOUT=30", "AWS_PROFILE=dev", "DB_HOST=postgres.staging", "DB_PASSWORD=s3cret", "EDITOR=vim",
				"HOME=/home/dev", "PATH=/usr/bin", "REGION=eu-1", "TERM=xterm"},
		},
		{
			name:   "disabled: the local environment",
			config: "{feature: {env: false}}",
			want:   []string{"AWS_PROFILE=dev", "EDITOR=vim", "HOME=/home/dev", "PATH=/usr/bin", "REGION=local", "TERM=xterm"},
		},
		{
			name:   "include with wildcards; * does not lift the default exclusions",
			config: "{feature: {env: {include: 'DB_*;*'}}}",
			want: []string{"API_TIMEOUT=30", "AWS_PROFILE=dev", "DB_HOST=postgres.staging", "DB_PASSWORD=s3cret", "EDITOR=vim",
				"HOME=/home/dev", "PATH=/usr/bin", "REGION=eu-1", "TERM=xterm"},
		},
		{
			name:   "include by exact name lifts a default exclusion",
			config: "{feature: {env: {include: [DB_HOST, HOSTNAME]}}}",
			want: []string{"AWS_PROFILE=dev", "DB_HOST=postgres.staging", "EDITOR=vim", "HOME=/home/dev", "HOSTNAME=backend-5d9c",
				"PATH=/usr/bin", "REGION=local", "TERM=xterm"},
		},
		{
			name:   "exclude with ? and *",
			config: "{feature: {env: {exclude: 'DB_PASS????;*_TIMEOUT'}}}",
			want: []string{"AWS_PROFILE=dev", "DB_HOST=postgres.staging", "EDITOR=vim", "HOME=/home/dev", "PATH=/usr/bin",
				"REGION=eu-1", "TERM=xterm"},
		},
		{
			name:   "override wins, unset removes (case-insensitive), mapping rewrites the target's values",
			config: "{feature: {env: {override: {REGION: test, NEW: 1}, unset: [aws_profile, DB_PASSWORD], mapping: {'_TIMEOUT$': '1000'}}}}",
			want: []string{"API_TIMEOUT=1000", "DB_HOST=postgres.staging", "EDITOR=vim", "HOME=/home/dev", "NEW=1", "PATH=/usr/bin",
				"REGION=test", "TERM=xterm"},
		},
		{
			name:   "env_file over the target, under override",
			config: "{feature: {env: {env_file: testdata/env/app.env, override: {DB_PORT: '6543'}}}}",
			want: []string{"API_TIMEOUT=30", "AWS_PROFILE=dev", "DB_HOST=localhost", "DB_PASSWORD=s3cret", "DB_PORT=6543", "EDITOR=vim",
				"EMPTY=", "GREETING=hello\nworld", "HOME=/home/dev", "LITERAL=no $expansion \\n here", "MULTI=line one\nline two",
				"PATH=/usr/bin", "REGION=eu-1", "TERM=xterm", "TRAILING=value", "URL=http://example.com/#anchor"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.config), "")
			if err != nil {
				t.Fatal(err)
			}
			got := c.Feature.Env.Filter(remote, local)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n  %q\nwant\n  %q", got, tc.want)
			}
		})
	}
}

func TestEnvImports(t *testing.T) {
	c := mustParse(t, "{feature: {env: {exclude: [SECRET_*]}}}")
	for name, want := range map[string]bool{
		"DB_HOST": true, "SECRET_KEY": false, "PATH": false, "LC_CTYPE": false, "XDG_RUNTIME_DIR": false,
		"DOPPEL_SESSION": false, "LD_PRELOAD": false, "NODE_OPTIONS": false, "": false,
	} {
		if got := c.Feature.Env.Imports(name); got != want {
			t.Errorf("Imports(%q) = %v", name, got)
		}
	}
}

func TestWildcardMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"*", "", true},
		{"*", "ANY", true},
		{"DB_*", "DB_HOST", true},
		{"DB_*", "XDB_HOST", false},
		{"*_URL", "API_URL", true},
		{"*_URL", "API_URL_2", false},
		{"A?C", "ABC", true},
		{"A?C", "AC", false},
		{"*A*B*", "xxAyyBzz", true},
		{"*A*B*", "xxByyAzz", false},
		{"a*a*a*a*a*b", strings.Repeat("a", 200), false},
		{"[A]", "[A]", true},
	} {
		if got := wildcardMatch(tc.pattern, tc.name); got != tc.want {
			t.Errorf("wildcardMatch(%q, %q) = %v", tc.pattern, tc.name, got)
		}
	}
}

func TestDotenv(t *testing.T) {
	for _, tc := range []struct {
		text    string
		want    []envVar
		wantErr string
	}{
		{"A=1\nB=2", []envVar{{"A", "1"}, {"B", "2"}}, ""},
		{"\ufeff# comment\r\nexport A = 1 \r\n\r\n", []envVar{{"A", "1"}}, ""},
		{"A='x # y'  # c\nB=\"q\\\"uote\\\\\"", []envVar{{"A", "x # y"}, {"B", `q"uote\`}}, ""},
		{"A=a#b", []envVar{{"A", "a#b"}}, ""},
		{"A=\"unterminated\nB=1", nil, "f.env:1: unterminated \"-quoted value"},
		{"A='x' y", nil, "f.env:1: unexpected 'y' after the closing quote"},
		{"\n\n=1", nil, `f.env:3: expected NAME=value, got "=1"`},
		{"export", nil, `f.env:1: expected NAME=value, got "export"`},
		{"1A=x", nil, `expected NAME=value`},
		{"app.name=x\nexport_this=1", []envVar{{"app.name", "x"}, {"export_this", "1"}}, ""},
	} {
		got, err := parseDotenv(tc.text, "f.env")
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.text, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %q, %v; want %q", tc.text, got, err, tc.want)
		}
	}
}

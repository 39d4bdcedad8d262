package main

import (
	"reflect"
	"testing"
)

func TestErrorLines(t *testing.T) {
	log := `2026-01-01 00:00:00.000 UTC [1] LOG:  checkpoint starting: shutdown immediate
2026-01-01 00:00:00.000 UTC [1] ERROR:  database "videos" already exists
2026-01-01 00:00:00.000 UTC [1] STATEMENT:  CREATE DATABASE "videos";
2026-01-01 00:00:00.000 UTC [1] ERROR:  syntax error at or near "CREAT"
2026-01-01 00:00:00.000 UTC [1] FATAL:  database "nope" does not exist
`
	want := []string{
		`2026-01-01 00:00:00.000 UTC [1] ERROR:  syntax error at or near "CREAT"`,
		`2026-01-01 00:00:00.000 UTC [1] FATAL:  database "nope" does not exist`,
	}
	if got := errorLines(log, alreadyExists); !reflect.DeepEqual(got, want) {
		t.Errorf("errorLines = %q", got)
	}
	if got := errorLines(log, nil); len(got) != 3 {
		t.Errorf("without ignore: %q", got)
	}
}

func TestQuoteIdent(t *testing.T) {
	if got := quoteIdent(`my "db"`); got != `"my ""db"""` {
		t.Errorf("quoteIdent = %s", got)
	}
}

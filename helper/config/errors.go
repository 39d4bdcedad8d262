package config

import (
	"fmt"
	"strings"
)

// Category is the error category of every error this package returns. The
// CLI and the IDE decide how to show an error by its category: a config
// error names the file, the line and the key to change.
const Category = "config"

// Severity says whether a finding stops the run.
type Severity int

const (
	// SeverityError findings make Load and Parse fail.
	SeverityError Severity = iota
	// SeverityWarning findings are kept in Config.Warnings: doppel runs,
	// but the user should know (an ignored mirrord key, a filter that can
	// never match).
	SeverityWarning
)

func (s Severity) String() string {
	if s == SeverityWarning {
		return "warning"
	}
	return "error"
}

// Code classifies a finding for tools that react to some kinds only (the
// IDE offers a quick fix for an unknown key).
type Code string

const (
	CodeSyntax     Code = "syntax"      // the file is not valid YAML/JSON
	CodeUnknownKey Code = "unknown-key" // a key doppel does not know
	CodeType       Code = "type"        // a value of the wrong type
	CodeValue      Code = "value"       // a value of the right type that is not allowed
	CodeConflict   Code = "conflict"    // settings that cannot be used together
	CodeIgnored    Code = "ignored"     // a mirrord setting doppel does not implement
	CodeIO         Code = "io"          // a file could not be read
)

// Error is one problem in a configuration, located as precisely as the
// source allows: File, Line and Column are zero when unknown (a value given
// on the command line has no line).
type Error struct {
	File     string
	Line     int // 1-based
	Column   int // 1-based
	KeyPath  string
	Message  string
	Code     Code
	Severity Severity
	// Err is the underlying error, if any (an *fs.PathError for a missing file).
	Err error
}

// Category returns "config".
func (e *Error) Category() string { return Category }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Error prints the location first, like a compiler, so that terminals and
// editors can jump to it: "file:line:col: keypath: message". Unknown keys
// read better as "unknown key feature.network.outgoin (did you mean ...)".
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
		b.WriteString(": ")
	}
	if e.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	switch {
	case e.Code == CodeUnknownKey && e.KeyPath != "":
		b.WriteString("unknown key ")
		b.WriteString(e.KeyPath)
		if e.Message != "" {
			b.WriteString(" ")
			b.WriteString(e.Message)
		}
	case e.KeyPath != "":
		b.WriteString(e.KeyPath)
		b.WriteString(": ")
		b.WriteString(e.Message)
	default:
		b.WriteString(e.Message)
	}
	return b.String()
}

// ErrorList is every error found in one configuration; Parse reports them
// all at once so that an editor can mark each of them.
type ErrorList []*Error

// Error prints one error per line.
func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Category returns "config".
func (l ErrorList) Category() string { return Category }

// Unwrap lets errors.As find the first *Error.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// pos is a place in a file.
type pos struct{ line, col int }

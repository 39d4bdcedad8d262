package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The env_file format is the common dotenv dialect (docker compose,
// python-dotenv, direnv's dotenv): NAME=value lines, "#" comments, an
// optional "export " prefix, single quotes (literal) and double quotes
// (with \n, \t, \", \\ escapes), both of which may span lines. Variables
// are not expanded: "$HOME" stays "$HOME".

type envVar struct{ name, value string }

// maxEnvFile bounds what is read: an env file is a few kilobytes.
const maxEnvFile = 1 << 20

func readEnvFile(path string) ([]envVar, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	// A FIFO or a device would block or never end.
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if info.Size() > maxEnvFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxEnvFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseDotenv(string(data), path)
}

// resolvePath makes a relative path relative to dir.
func resolvePath(dir, path string) string {
	if filepath.IsAbs(path) || dir == "" {
		return path
	}
	return filepath.Join(dir, path)
}

// parseDotenv parses a dotenv file; a syntax error is an *Error located in
// that file.
func parseDotenv(data, file string) ([]envVar, error) {
	p := dotenvParser{s: strings.ReplaceAll(strings.TrimPrefix(data, "\ufeff"), "\r\n", "\n"), line: 1, file: file}
	var vars []envVar
	for {
		p.skipBlank()
		if p.eof() {
			return vars, nil
		}
		if p.peek() == '#' {
			p.skipLine()
			continue
		}
		v, err := p.assignment()
		if err != nil {
			return nil, err
		}
		vars = append(vars, v)
	}
}

type dotenvParser struct {
	s    string
	i    int
	line int
	file string
}

func (p *dotenvParser) eof() bool  { return p.i >= len(p.s) }
func (p *dotenvParser) peek() byte { return p.s[p.i] }

func (p *dotenvParser) next() byte {
	c := p.s[p.i]
	p.i++
	if c == '\n' {
		p.line++
	}
	return c
}

func (p *dotenvParser) errorf(format string, args ...any) error {
	return &Error{File: p.file, Line: p.line, Code: CodeSyntax, Message: fmt.Sprintf(format, args...)}
}

// skipBlank skips whitespace and newlines.
func (p *dotenvParser) skipBlank() {
	for !p.eof() && strings.IndexByte(" \t\n\r", p.peek()) >= 0 {
		p.next()
	}
}

// skipSpaces skips whitespace on the current line.
func (p *dotenvParser) skipSpaces() {
	for !p.eof() && (p.peek() == ' ' || p.peek() == '\t') {
		p.next()
	}
}

func (p *dotenvParser) skipLine() {
	for !p.eof() && p.next() != '\n' {
	}
}

// restOfLine accepts only spaces and a comment up to the end of the line.
func (p *dotenvParser) restOfLine() error {
	p.skipSpaces()
	if p.eof() || p.peek() == '\n' {
		return nil
	}
	if p.peek() == '#' {
		p.skipLine()
		return nil
	}
	return p.errorf("unexpected %q after the closing quote", p.peek())
}

func isNameByte(c byte, first bool) bool {
	switch {
	case c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z':
		return true
	case first:
		return false
	}
	return c >= '0' && c <= '9' || c == '.' || c == '-'
}

func (p *dotenvParser) name() string {
	start := p.i
	for !p.eof() && isNameByte(p.peek(), p.i == start) {
		p.next()
	}
	return p.s[start:p.i]
}

func (p *dotenvParser) assignment() (envVar, error) {
	line := p.line
	start := p.i
	name := p.name()
	if name == "export" && !p.eof() && (p.peek() == ' ' || p.peek() == '\t') {
		p.skipSpaces()
		name = p.name()
	}
	p.skipSpaces()
	if name == "" || p.eof() || p.peek() != '=' {
		text, _, _ := strings.Cut(p.s[start:], "\n")
		return envVar{}, p.errorf("expected NAME=value, got %q", text)
	}
	p.next()
	p.skipSpaces()
	var value string
	var err error
	switch {
	case p.eof() || p.peek() == '\n':
	case p.peek() == '\'':
		value, err = p.quoted('\'', line)
	case p.peek() == '"':
		value, err = p.quoted('"', line)
	default:
		value = p.unquoted()
	}
	if err != nil {
		return envVar{}, err
	}
	return envVar{name: name, value: value}, nil
}

func (p *dotenvParser) unquoted() string {
	start := p.i
	end := start
	for !p.eof() && p.peek() != '\n' {
		// " #" starts a comment; "a#b" is a value.
		if p.peek() == '#' && p.i > start && (p.s[p.i-1] == ' ' || p.s[p.i-1] == '\t') {
			p.skipLine()
			break
		}
		p.next()
		end = p.i
	}
	return strings.TrimRight(p.s[start:end], " \t")
}

func (p *dotenvParser) quoted(quote byte, line int) (string, error) {
	p.next() // the opening quote
	var b strings.Builder
	for {
		if p.eof() {
			p.line = line
			return "", p.errorf("unterminated %c-quoted value", quote)
		}
		c := p.next()
		switch {
		case c == quote:
			return b.String(), p.restOfLine()
		case c == '\\' && quote == '"' && !p.eof():
			esc := p.next()
			switch esc {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '"', '\\', '$', '`':
				b.WriteByte(esc)
			default:
				b.WriteByte('\\')
				b.WriteByte(esc)
			}
		default:
			b.WriteByte(c)
		}
	}
}

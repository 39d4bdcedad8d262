package cli

import "io"

// Streams are the standard streams a command reads and writes. Commands never
// touch os.Stdin/Stdout/Stderr directly, so tests can drive them.
type Streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

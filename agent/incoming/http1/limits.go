package http1

import "time"

// Limits bound what one connection may make the agent buffer or wait for.
// A zero field takes its default.
type Limits struct {
	// MaxHeaderBytes bounds a head: start line, field lines and the blank
	// line (64 KiB). A larger request head is refused with 431.
	MaxHeaderBytes int
	// MaxHeaders bounds the field lines of a head (128); more is a 431.
	MaxHeaders int
	// MaxChunkLineBytes bounds a chunk-size line with its extensions (4 KiB).
	MaxChunkLineBytes int
	// MaxTrailerBytes bounds the trailer section of a chunked body (16 KiB).
	MaxTrailerBytes int
	// HeadTimeout bounds the time from the first byte of a request head to
	// its blank line (10 s), against clients that send it byte by byte.
	HeadTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a kept-alive
	// client connection (2 min).
	IdleTimeout time.Duration
	// DialTimeout bounds the dial of an upstream (10 s).
	DialTimeout time.Duration
}

func (l Limits) withDefaults() Limits {
	set := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	setDuration := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&l.MaxHeaderBytes, 64<<10)
	set(&l.MaxHeaders, 128)
	set(&l.MaxChunkLineBytes, 4<<10)
	set(&l.MaxTrailerBytes, 16<<10)
	setDuration(&l.HeadTimeout, 10*time.Second)
	setDuration(&l.IdleTimeout, 2*time.Minute)
	setDuration(&l.DialTimeout, 10*time.Second)
	return l
}

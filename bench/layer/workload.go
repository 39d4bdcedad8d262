package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

// workload is the measured program: it runs one operation n times and
// prints its cost (or throughput) as a single number.
func workload(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: workload OP ARG N")
		return 2
	}
	op, arg := args[0], args[1]
	n, err := strconv.Atoi(args[2])
	if err != nil || n <= 0 {
		fmt.Fprintln(os.Stderr, "bad N")
		return 2
	}
	start := time.Now()
	switch op {
	case "getppid":
		for i := 0; i < n; i++ {
			syscall.Getppid()
		}
		fmt.Printf("%.2f\n", float64(time.Since(start).Nanoseconds())/float64(n))
	case "open":
		for i := 0; i < n; i++ {
			fd, err := syscall.Open(arg, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
			if err != nil {
				fmt.Fprintln(os.Stderr, "open:", err)
				return 1
			}
			syscall.Close(fd)
		}
		fmt.Printf("%.3f\n", float64(time.Since(start).Nanoseconds())/float64(n)/1000)
	case "connect":
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp4", arg)
			if err != nil {
				fmt.Fprintln(os.Stderr, "connect:", err)
				return 1
			}
			c.Close()
		}
		fmt.Printf("%.3f\n", float64(time.Since(start).Nanoseconds())/float64(n)/1000)
	case "read":
		c, err := net.Dial("tcp4", arg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "connect:", err)
			return 1
		}
		c.Write([]byte("r"))
		got, err := io.Copy(io.Discard, c)
		if err != nil || got != int64(n)<<20 {
			fmt.Fprintln(os.Stderr, "read:", got, err)
			return 1
		}
		fmt.Printf("%.0f\n", float64(got)/time.Since(start).Seconds()/1e6)
	default:
		fmt.Fprintln(os.Stderr, "unknown op", op)
		return 2
	}
	return 0
}

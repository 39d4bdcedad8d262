// Command image builds container images from local files without Docker
// and writes them as docker-archive tarballs, optionally importing them
// into containerd. Run it with -h for the flags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseArgs(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usageText)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "image: %v\n", err)
		return 2
	}
	if err := buildAndWrite(o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "image: %v\n", err)
		return 1
	}
	return 0
}

func buildAndWrite(o *options, stdout, stderr io.Writer) error {
	img, stats, err := buildImage(o, stderr)
	if err != nil {
		return err
	}
	if err := writeArchive(img, o.tags, o.out); err != nil {
		return err
	}
	if err := printSummary(stdout, img, o.tags, o.out, stats); err != nil {
		return err
	}
	if o.importAddr == "" {
		return nil
	}
	return importArchive(o.importAddr, o.out, o.tags, stdout)
}

// Command gen writes schema/doppel.schema.json, the JSON schema of doppel
// configuration files, from the Go types in helper/config. Run it from the
// repository root: `make schema` (go run ./schema/gen).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/doppel-dev/doppel/helper/config"
)

func main() {
	src := flag.String("src", "helper/config", "directory of the config package's source (its doc comments become descriptions)")
	out := flag.String("out", "schema/doppel.schema.json", "file to write")
	flag.Parse()
	if err := run(*src, *out); err != nil {
		fmt.Fprintln(os.Stderr, "schema/gen:", err)
		os.Exit(1)
	}
}

func run(src, out string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("%w (run from the repository root)", err)
	}
	data, err := config.GenerateSchema(src)
	if err != nil {
		return err
	}
	return os.WriteFile(out, data, 0o644)
}

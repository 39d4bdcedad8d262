// Command backend is the API tier of the staging demo application: it
// greets, and stores and lists videos in Postgres.
package main

import (
	"log"
	"os"

	"github.com/doppel-dev/doppel/test/apps/internal/httpserve"
)

func main() {
	store, err := openPGStore(dsnFromEnv(os.Getenv))
	if err != nil {
		log.Fatal(err)
	}
	if err := httpserve.Run(httpserve.Addr("8080"), newHandler(store, os.Stdout)); err != nil {
		log.Fatal(err)
	}
}

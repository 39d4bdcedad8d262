// Command frontend is the web tier of the staging demo application: HTML
// pages over the backend's API.
package main

import (
	"log"
	"os"

	"github.com/doppel-dev/doppel/test/apps/internal/httpserve"
)

func main() {
	backendURL := os.Getenv("BACKEND_URL")
	if backendURL == "" {
		backendURL = "http://backend"
	}
	h := newHandler(newBackend(backendURL), os.Stdout)
	if err := httpserve.Run(httpserve.Addr("8080"), h); err != nil {
		log.Fatal(err)
	}
}

// Command dlvserver is the program the integration suite debugs with Delve
// under doppel (TestDelve): a static HTTP server whose /call handler dials a
// TCP server (the pod's greeting port) and answers with the greeting it read.
// Build it with CGO_ENABLED=0 and -gcflags=all=-N -l.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	port := flag.Int("port", 0, "local port to listen on (all interfaces)")
	target := flag.String("target", os.Getenv("DLVSERVER_TARGET"), "host:port of the TCP server /call dials (default $DLVSERVER_TARGET)")
	flag.Parse()
	if *port == 0 || *target == "" {
		log.Fatal("dlvserver: -port and -target (or DLVSERVER_TARGET) are required")
	}
	http.HandleFunc("/call", func(w http.ResponseWriter, r *http.Request) {
		callHandler(w, r, *target)
	})
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", *port))
	if err != nil {
		log.Fatalf("dlvserver: %v", err)
	}
	fmt.Printf("dlvserver listening on %s\n", l.Addr())
	log.Fatal(http.Serve(l, nil))
}

// callHandler is where the test sets its breakpoint: it dials target and
// answers with the first line the server sent.
func callHandler(w http.ResponseWriter, r *http.Request, target string) {
	greeting, err := dialGreeting(target)
	if err != nil {
		http.Error(w, "dial "+target+": "+err.Error(), http.StatusBadGateway)
		return
	}
	fmt.Fprintf(w, "greeting=%s\n", greeting)
}

func dialGreeting(target string) (string, error) {
	c, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return line[:len(line)-1], nil
}

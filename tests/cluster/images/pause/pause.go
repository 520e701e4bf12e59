// The pod sandbox's process on the local cluster's real nodes: it holds the pod's
// namespaces open and does nothing else. It exits on SIGTERM or SIGINT and reaps any
// child it inherits as PID 1 of a shared PID namespace. The usual pause image lives on
// registry.k8s.io, which this project's machines cannot reach.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}

// Command vessel is Vessel's one binary: the control plane (`vessel
// server`), a host agent (`vessel agent`) and the user commands (run, ps,
// describe, stop, profile, size, credentials).
package main

import (
	"os"

	"vessel.dev/vessel/internal/cli"
)

func main() {
	os.Exit(cli.Execute(os.Args[1:]))
}

package main

import (
	"os"

	"vessel.dev/vessel/internal/cli"
)

func main() {
	os.Exit(cli.Execute(os.Args[1:]))
}

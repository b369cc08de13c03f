package main

import (
	"fmt"
	"os"

	"vessel.dev/vessel/internal/guest"
	"vessel.dev/vessel/internal/runtime/microvm/monitor"
)

func main() {
	if os.Args[0] == guest.InitArg {
		os.Exit(guest.InitMain(os.Args))
	}
	if os.Args[0] == guest.ContainerInitArg {
		err := guest.ContainerInit(os.Args)
		fmt.Fprintln(os.Stderr, "vessel-guest: container:", err)
		os.Exit(127)
	}
	if os.Getpid() == 1 {
		guest.Main()
		return
	}
	if len(os.Args) == 3 && os.Args[1] == "monitor" {
		if err := monitor.Run(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "vessel-guest monitor:", err)
			os.Exit(1)
		}
		// Say why it ended, so that a runtime waiting on it can tell.
		fmt.Fprintln(os.Stderr, "vessel-guest monitor: the VM's control channel closed")
		return
	}
	fmt.Fprintln(os.Stderr, "usage: vessel-guest monitor <config.json>  (as PID 1 of a VM: the guest agent)")
	os.Exit(2)
}

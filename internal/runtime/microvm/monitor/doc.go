// Package monitor is the host side of a micro-VM's control channel: one
// monitor process per VM ("vessel-guest monitor <config>", started by the
// micro-VM runtime in a session of its own so that it outlives the agent
// that started it). It connects to QEMU's socket of the channel, sends the
// hello with the guest's configuration, writes each container's log to
// <LogDir>/<name>.log in the CRI format (stamped with the host's time,
// capped at LogMaxBytes), exit statuses to <ExitDir>/<name>, started
// markers and the ready file, relays the runtime's requests from its own
// socket (one per connection), and empties the VM's console log past
// ConsoleMaxBytes. It ends when the VM's side of the channel closes.
//
// The guest is untrusted: the monitor reads bounded lines, accepts only
// the container names of its Config (files are opened through os.Root of
// its directories), the streams stdout and stderr and log lines without a
// newline; anything else is dropped and logged (the first 20). A guest that
// misbehaves harms only its own sandbox.
//
//	// the runtime: write Config to <sandbox>/monitor.json, then
//	exec.Command(guestBinary, "monitor", "<sandbox>/monitor.json")
//	// cmd/vessel-guest
//	err := monitor.Run(os.Args[2])
//
// This package imports only guestproto (never internal/guest, the agent,
// nor the runtime packages): it is linked into the small static guest
// binary, which serves as the monitor on the host.
package monitor

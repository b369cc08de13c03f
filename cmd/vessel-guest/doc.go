// Command vessel-guest is the micro-VM runtime's small static binary. As
// PID 1 of a VM (from the initramfs) it is the guest agent (internal/guest);
// on the host, "vessel-guest monitor <config>" is the per-VM monitor that
// holds the control channel (internal/runtime/microvm/monitor). Build it
// with CGO_ENABLED=0.
package main

// Command vessel is Vessel's one binary: the control plane (`vessel
// server`), a host agent (`vessel agent`) and the user commands (run, ps,
// describe, stop, profile, size, credentials).
package main

// Package cli holds Vessel's commands, one small file per verb with its
// flags in one struct. User commands talk to the control plane only through
// aws-sdk-go-v2's ECS and EKS clients, exactly as any AWS tool would; the
// server and agent commands wire the internal packages together.
//
// It may import anything of Vessel's; nothing imports it but cmd/vessel.
package cli

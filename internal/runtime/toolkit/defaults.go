package toolkit

import (
	"os"
	"path/filepath"

	"vessel.dev/vessel/internal/runtime"
)

// Defaults of a provisioned sandbox beyond its size, those of Fargate,
// for every back end.
const (
	DefaultPidsLimit           = 1024
	DefaultEphemeralStorageGiB = 20
	DefaultLogMaxBytes         = 10 << 20
)

// FillDefaults sets the spec's unset PidsLimit, EphemeralStorageGiB and
// LogMaxBytes to DefaultPidsLimit, DefaultEphemeralStorageGiB and
// DefaultLogMaxBytes.
func FillDefaults(spec *runtime.Spec) {
	if spec.PidsLimit == 0 {
		spec.PidsLimit = DefaultPidsLimit
	}
	if spec.EphemeralStorageGiB == 0 {
		spec.EphemeralStorageGiB = DefaultEphemeralStorageGiB
	}
	if spec.LogMaxBytes == 0 {
		spec.LogMaxBytes = DefaultLogMaxBytes
	}
}

// writeEtc writes minimal hosts, hostname and resolv.conf into dir, for a
// sandbox whose spec has no EtcDir.
func writeEtc(dir, hostname string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"hosts":       "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + hostname + "\n",
		"hostname":    hostname + "\n",
		"resolv.conf": "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

package agentproto_test

import (
	"net/netip"
	"slices"
	"testing"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
)

func TestServerAddrs(t *testing.T) {
	c, err := agentproto.NewClient("https://10.0.0.2:8600,https://10.0.0.1:8600,http://localhost:8600,https://10.0.0.1:8601",
		auth.Key{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}, "")
	if err != nil {
		t.Fatal(err)
	}
	got := c.ServerAddrs(t.Context())
	for _, want := range []string{"10.0.0.1", "10.0.0.2", "127.0.0.1"} {
		if !slices.Contains(got, netip.MustParseAddr(want)) {
			t.Errorf("ServerAddrs() = %v; want %s among them", got, want)
		}
	}
	if n := len(got); n != len(slices.Compact(slices.Clone(got))) {
		t.Errorf("ServerAddrs() = %v repeats an address", got)
	}
}

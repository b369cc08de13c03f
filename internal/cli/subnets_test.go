package cli

import (
	"slices"
	"testing"
)

func TestParseSubnetOptions(t *testing.T) {
	got, err := parseSubnets([]string{"a=10.89.1.0/24,nat,peer=b,peer=c", "b=10.89.2.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].NAT || !slices.Equal(got[0].Peers, []string{"b", "c"}) || got[1].NAT || got[1].Peers != nil {
		t.Fatalf("got %+v", got)
	}
	// As the string-slice flag hands them over, split at commas.
	split, err := parseSubnets([]string{"a=10.89.1.0/24", "nat", "peer=b", "b=10.89.2.0/24", "peer=a"})
	if err != nil || len(split) != 2 || !split[0].NAT || !slices.Equal(split[0].Peers, []string{"b"}) || !slices.Equal(split[1].Peers, []string{"a"}) {
		t.Fatalf("split flags: %+v %v", split, err)
	}
	for _, bad := range []string{"a=10.89.1.0/24,peer=", "a=10.89.1.0/24,open"} {
		if _, err := parseSubnets([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

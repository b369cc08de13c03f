package sizing

import (
	"strings"
	"testing"

	"vessel.dev/vessel/internal/errdefs"
)

// docTable is FARGATE.md's size table written out by hand, cpu units to
// memory MiB, so that the test does not share the code it checks.
var docTable = []struct {
	units int64
	mib   []int64
}{
	{256, []int64{512, 1024, 2048}},
	{512, []int64{1024, 2048, 3072, 4096}},
	{1024, []int64{2048, 3072, 4096, 5120, 6144, 7168, 8192}},
	{2048, []int64{4096, 5120, 6144, 7168, 8192, 9216, 10240, 11264, 12288, 13312, 14336, 15360, 16384}},
	{4096, []int64{8192, 9216, 10240, 11264, 12288, 13312, 14336, 15360, 16384, 17408, 18432, 19456,
		20480, 21504, 22528, 23552, 24576, 25600, 26624, 27648, 28672, 29696, 30720}},
	{8192, []int64{16384, 20480, 24576, 28672, 32768, 36864, 40960, 45056, 49152, 53248, 57344, 61440}},
	{16384, []int64{32768, 40960, 49152, 57344, 65536, 73728, 81920, 90112, 98304, 106496, 114688, 122880}},
}

var unitsToMilli = map[int64]int64{256: 250, 512: 500, 1024: 1000, 2048: 2000, 4096: 4000, 8192: 8000, 16384: 16000}

func TestTableMatchesDocumentation(t *testing.T) {
	var want []Size
	for _, r := range docTable {
		for _, m := range r.mib {
			want = append(want, Size{MilliCPU: unitsToMilli[r.units], MemoryMiB: m})
		}
	}
	got := Table()
	if len(got) != len(want) {
		t.Fatalf("Table() has %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Table()[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	// The caller owns the slice.
	got[0].MemoryMiB = 1
	if Table()[0].MemoryMiB != 512 {
		t.Error("changing Table()'s result changed the table")
	}
	if Largest() != (Size{16000, 122880}) {
		t.Errorf("Largest() = %+v", Largest())
	}
}

func TestValidateTaskAcceptsEveryCombination(t *testing.T) {
	n := 0
	for _, r := range docTable {
		for _, m := range r.mib {
			n++
			if err := ValidateTask(r.units, m); err != nil {
				t.Errorf("ValidateTask(%d, %d) = %v, want nil", r.units, m, err)
			}
		}
	}
	if n != 74 {
		t.Fatalf("documented table has %d combinations, want 74", n)
	}
}

func TestValidateTaskRejectsNeighbours(t *testing.T) {
	valid := map[[2]int64]bool{}
	for _, r := range docTable {
		for _, m := range r.mib {
			valid[[2]int64{r.units, m}] = true
		}
	}
	// For every row: just below the minimum, just above the maximum, and
	// half a step between every pair of valid values.
	for _, r := range docTable {
		cands := []int64{r.mib[0] - 512, r.mib[0] - 1, r.mib[len(r.mib)-1] + 1, r.mib[len(r.mib)-1] + 1024, 0, -512}
		for i := 1; i < len(r.mib); i++ {
			cands = append(cands, (r.mib[i-1]+r.mib[i])/2)
			for m := r.mib[i-1] + 1024; m < r.mib[i]; m += 1024 {
				cands = append(cands, m) // e.g. 8192/18432, 16384/34816

			}
		}
		for _, m := range cands {
			if valid[[2]int64{r.units, m}] {
				t.Fatalf("test bug: candidate %d/%d is valid", r.units, m)
			}
			err := ValidateTask(r.units, m)
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("ValidateTask(%d, %d) = %v, want invalid argument", r.units, m, err)
			}
		}
	}

	tests := []struct {
		units, mib int64
		wantMsg    string
	}{
		{256, 4096, "valid memory values for cpu 256 are 512, 1024, 2048 (MiB)"},
		{256, 3072, "valid memory values for cpu 256 are 512, 1024, 2048 (MiB)"},
		{512, 512, "valid memory values for cpu 512 are 1024, 2048, 3072, 4096 (MiB)"},
		{1024, 9216, "valid memory values for cpu 1024 are 2048, 3072, 4096, 5120, 6144, 7168, 8192 (MiB)"},
		{1024, 1024, "cpu 1024 with memory 1024"},
		{2048, 17408, "valid memory values for cpu 2048 are 4096,"},
		{4096, 31744, "valid memory values for cpu 4096 are 8192, 9216,"},
		{8192, 18432, "valid memory values for cpu 8192 are 16384, 20480, 24576,"},
		{16384, 36864, "valid memory values for cpu 16384 are 32768, 40960,"},
		{16384, 131072, "122880 (MiB)"},
		{300, 1024, "valid cpu values are 256, 512, 1024, 2048, 4096, 8192, 16384"},
		{0, 512, "invalid cpu value 0"},
		{32768, 65536, "valid cpu values are 256, 512, 1024, 2048, 4096, 8192, 16384"},
		{1000, 2048, "invalid cpu value 1000"},
	}
	for _, tt := range tests {
		err := ValidateTask(tt.units, tt.mib)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("ValidateTask(%d, %d) = %v, want invalid argument", tt.units, tt.mib, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("ValidateTask(%d, %d) message %q does not contain %q", tt.units, tt.mib, err, tt.wantMsg)
		}
	}
}

// 8 vCPU goes from 16 GiB in 4 GiB steps, so 20 GiB is valid and 18 GiB
// is not.
func TestValidateTaskEightVCPUSteps(t *testing.T) {
	if err := ValidateTask(8192, 20480); err != nil {
		t.Errorf("ValidateTask(8192, 20480) = %v, want nil (16 GiB + one 4 GiB step)", err)
	}
	if err := ValidateTask(8192, 18432); err == nil {
		t.Error("ValidateTask(8192, 18432) = nil, want an error")
	}
}

func TestParseECSCPU(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"256", 256, false},
		{"1024", 1024, false},
		{" 2048 ", 2048, false},
		{"16384", 16384, false},
		{"1 vCPU", 1024, false},
		{"1 vcpu", 1024, false},
		{"1vCPU", 1024, false},
		{"0.25 vcpu", 256, false},
		{".5 VCPU", 512, false},
		{"2 vCPU", 2048, false},
		{"16 vCPU", 16384, false},
		{"300", 300, false}, // parses; ValidateTask rejects it
		{"", 0, true},
		{"vCPU", 0, true},
		{"0.3 vCPU", 0, true}, // 307.2 units
		{"1.5", 0, true},
		{"-1024", 0, true},
		{"0", 0, true},
		{"0 vCPU", 0, true},
		{"NaN vCPU", 0, true},
		{"inf vCPU", 0, true},
		{"1 GB", 0, true},
		{"1 cpu", 0, true},
		{"abc", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseECSCPU(tt.in)
		if tt.wantErr {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("ParseECSCPU(%q) = %d, %v; want invalid argument", tt.in, got, err)
			} else if !strings.Contains(err.Error(), "1 vCPU") {
				t.Errorf("ParseECSCPU(%q) message %q does not say what is accepted", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseECSCPU(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseECSMemory(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"512", 512, false},
		{"2048", 2048, false},
		{"122880", 122880, false},
		{"2 GB", 2048, false},
		{"0.5GB", 512, false},
		{"0.5 gb", 512, false},
		{"1 GB", 1024, false},
		{"120 GB", 122880, false},
		{"1.5 GB", 1536, false},
		{"", 0, true},
		{"GB", 0, true},
		{"2 GiB", 0, true},
		{"2048 MiB", 0, true},
		{"1.0001 GB", 0, true},
		{"-2 GB", 0, true},
		{"0", 0, true},
		{"1 vCPU", 0, true},
		{"2e3", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseECSMemory(tt.in)
		if tt.wantErr {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("ParseECSMemory(%q) = %d, %v; want invalid argument", tt.in, got, err)
			} else if !strings.Contains(err.Error(), "2 GB") {
				t.Errorf("ParseECSMemory(%q) message %q does not say what is accepted", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseECSMemory(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestSizeString(t *testing.T) {
	tests := []struct {
		s     Size
		want  string
		units int64
	}{
		{Size{250, 512}, "0.25vCPU 0.5GB", 256},
		{Size{250, 2048}, "0.25vCPU 2GB", 256},
		{Size{500, 1024}, "0.5vCPU 1GB", 512},
		{Size{1000, 8192}, "1vCPU 8GB", 1024},
		{Size{2000, 9216}, "2vCPU 9GB", 2048},
		{Size{4000, 30720}, "4vCPU 30GB", 4096},
		{Size{8000, 61440}, "8vCPU 60GB", 8192},
		{Size{16000, 122880}, "16vCPU 120GB", 16384},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.s, got, tt.want)
		}
		if got := tt.s.CPUUnits(); got != tt.units {
			t.Errorf("%+v.CPUUnits() = %d, want %d", tt.s, got, tt.units)
		}
	}
	// Every table entry has the "<cpu>vCPU <mem>GB" shape, no trailing zeros.
	for _, s := range Table() {
		str := s.String()
		if !strings.HasSuffix(str, "GB") || !strings.Contains(str, "vCPU ") || strings.Contains(str, ".0") {
			t.Errorf("%+v.String() = %q", s, str)
		}
	}
}

// TestParseClass: every size of the table reads back from its class, and
// anything else is refused with what is accepted.
func TestParseClass(t *testing.T) {
	for _, s := range Table() {
		got, err := ParseClass(s.Class())
		if err != nil || got != s {
			t.Errorf("ParseClass(%q) = %+v, %v; want %+v", s.Class(), got, err, s)
		}
	}
	if got := (Size{MilliCPU: 250, MemoryMiB: 512}).Class(); got != "0.25/0.5" {
		t.Errorf("Class of 0.25 vCPU 512 MiB = %q, want 0.25/0.5", got)
	}
	for _, in := range []string{"", "2", "2/", "/4", "3/4", "2/40", "0.3/1", "a/b", "-1/2", "2/4/8", "1e3/2"} {
		_, err := ParseClass(in)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "e.g. 2/4") {
			t.Errorf("ParseClass(%q) = %v; want an invalid-argument error saying what is accepted", in, err)
		}
	}
}

package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Timestamp is a point in time as both the ECS (JSON 1.1) and the EKS
// (REST-JSON) protocols encode it: a JSON number of seconds since the Unix
// epoch, with the fraction carrying milliseconds, e.g. 1732838400.123.
//
// Optional timestamps are *Timestamp with omitempty; NewTimestamp returns nil
// for the zero time so that "never happened" is left out of the body.
type Timestamp struct{ time.Time }

// NewTimestamp wraps t for the wire. It returns nil for the zero time.
func NewTimestamp(t time.Time) *Timestamp {
	if t.IsZero() {
		return nil
	}
	return &Timestamp{t}
}

// MarshalJSON encodes the time as epoch seconds with exactly three decimals
// (millisecond precision; finer parts are truncated). The zero time encodes
// as null.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	ms, sign := t.UnixMilli(), ""
	if ms < 0 { // before 1970: the sign applies to the whole decimal
		ms, sign = -ms, "-"
	}
	return fmt.Appendf(nil, "%s%d.%03d", sign, ms/1000, ms%1000), nil
}

// UnmarshalJSON accepts what the protocols send, a JSON number of epoch
// seconds (integer, fractional or in exponent form), and for robustness a
// JSON string holding either such a number or an ISO-8601 / RFC 3339 time.
// null leaves t unchanged. The result is in UTC.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("timestamp: %w", err)
		}
		s = strings.TrimSpace(s)
		if tt, err := parseEpochSeconds(s); err == nil {
			t.Time = tt
			return nil
		}
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05Z0700", "2006-01-02T15:04:05", "2006-01-02"} {
			if tt, err := time.Parse(layout, s); err == nil {
				t.Time = tt.UTC()
				return nil
			}
		}
		return fmt.Errorf("timestamp: %q is neither epoch seconds nor an ISO-8601 time (want e.g. 1732838400.123 or 2024-11-29T00:00:00.123Z)", s)
	}
	tt, err := parseEpochSeconds(string(b))
	if err != nil {
		return err
	}
	t.Time = tt
	return nil
}

// parseEpochSeconds parses a decimal number of seconds. Plain decimals are
// parsed exactly to the nanosecond; exponent forms go through float64 and are
// rounded to the millisecond.
func parseEpochSeconds(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("timestamp: empty value")
	}
	if !strings.ContainsAny(s, "eE") {
		intPart, fracPart, _ := strings.Cut(s, ".")
		neg := strings.HasPrefix(intPart, "-")
		sec, err := strconv.ParseInt(intPart, 10, 64)
		if err == nil && (fracPart == "" || isDigits(fracPart)) {
			if len(fracPart) > 9 {
				fracPart = fracPart[:9]
			}
			var nsec int64
			if fracPart != "" {
				nsec, _ = strconv.ParseInt(fracPart+strings.Repeat("0", 9-len(fracPart)), 10, 64)
			}
			if neg {
				nsec = -nsec
			}
			return time.Unix(sec, nsec).UTC(), nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return time.Time{}, fmt.Errorf("timestamp: %q is not a number of epoch seconds", s)
	}
	return time.UnixMilli(int64(math.Round(f * 1000))).UTC(), nil
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

package server

import (
	"testing"
	"time"
)

// The buckets, with a fake clock.

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestKeyLimiterDropsIdleBuckets(t *testing.T) {
	k := newKeyLimiter(1, 3)
	for i := 0; i < 3; i++ {
		if !k.allow("a", t0) {
			t.Fatalf("call %d of a burst of 3 refused", i+1)
		}
	}
	if k.allow("a", t0) {
		t.Fatal("a 4th call within the same instant was allowed")
	}
	if !k.allow("b", t0) || k.size() != 2 {
		t.Fatalf("another key has a bucket of its own: %d buckets", k.size())
	}
	// 1 s later key a has one token again.
	if !k.allow("a", t0.Add(time.Second)) || k.allow("a", t0.Add(time.Second)) {
		t.Fatal("a bucket refills at its rate")
	}
	// Once full again, a's and b's buckets are dropped by the next sweep.
	if !k.allow("c", t0.Add(time.Second+bucketIdle)) || k.size() != 1 {
		t.Fatalf("%d buckets after the sweep, want c's alone", k.size())
	}
	// A bucket that is not full is kept.
	k.allow("c", t0.Add(2*bucketIdle+time.Second))
	k.allow("c", t0.Add(2*bucketIdle+time.Second))
	if k.allow("d", t0.Add(2*bucketIdle+time.Second)); k.size() != 2 {
		t.Fatalf("%d buckets, want c's (not full) and d's", k.size())
	}
	var none *keyLimiter
	if !none.allow("a", t0) {
		t.Fatal("no limiter allows everything")
	}
}

func TestLaunchBucket(t *testing.T) {
	b := newLaunchBucket(20, 100)
	if b.available(t0) != 100 || !b.take(100, t0) || b.take(1, t0) {
		t.Fatal("a full bucket of 100 serves 100 tasks and no more")
	}
	if got := b.available(t0.Add(500 * time.Millisecond)); got != 10 {
		t.Fatalf("%d tokens after 0.5 s at 20/s, want 10", got)
	}
	if b.take(11, t0.Add(500*time.Millisecond)) || !b.take(10, t0.Add(500*time.Millisecond)) {
		t.Fatal("all or none: 11 of 10 refused, 10 of 10 taken")
	}
	var none *launchBucket
	if none.available(t0) != -1 || !none.take(1000, t0) {
		t.Fatal("no bucket: no limit")
	}
}

package discovery

import (
	"context"
	"testing"
)

func TestFreeBind(t *testing.T) {
	// 192.0.2.0/24 is TEST-NET-1, on no host.
	cfg := Config{Source: newFakeSource(), Listen: []string{"192.0.2.77:0"}, Upstreams: []string{}, Logger: quiet}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err == nil {
		t.Fatal("bound an address the host lacks without FreeBind")
	}
	cfg.FreeBind = true
	if s, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatalf("FreeBind: %v", err)
	}
	cancel()
	s.Wait()
}

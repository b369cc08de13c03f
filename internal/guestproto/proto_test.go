package guestproto

import (
	"bytes"
	"testing"
)

func TestConnRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	c := NewConn(&buf, &buf)
	in := Msg{Op: EvLog, Container: "app", Stream: "stdout", Data: []byte("hello \x00 world"), Partial: true}
	if err := c.Send(in); err != nil {
		t.Fatal(err)
	}
	out, err := c.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if out.Op != in.Op || string(out.Data) != string(in.Data) || !out.Partial || out.Container != "app" {
		t.Errorf("got %+v, want %+v", out, in)
	}
}

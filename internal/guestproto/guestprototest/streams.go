package guestprototest

import (
	"bytes"
	"strings"
	"time"

	"vessel.dev/vessel/internal/guestproto"
)

// Streams are streams a guest sends: real messages, and hostile ones.
func Streams() []string {
	lines := func(ms ...guestproto.Msg) string {
		var b bytes.Buffer
		c := guestproto.NewConn(nil, &b)
		for _, m := range ms {
			c.Send(m)
		}
		return b.String()
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	return []string{
		lines(guestproto.Msg{Op: guestproto.EvReady},
			guestproto.Msg{Op: guestproto.EvStarted, Container: "app"},
			guestproto.Msg{Op: guestproto.EvLog, Container: "app", Stream: "stdout", Data: []byte("hello")},
			guestproto.Msg{Op: guestproto.EvLog, Container: "app", Stream: "stderr", Data: []byte("part"), Partial: true},
			guestproto.Msg{Op: guestproto.EvExit, Container: "app", Code: 137, OOMKilled: true, Time: at}),
		lines(guestproto.Msg{Op: guestproto.EvState, State: []guestproto.ContainerState{{Name: "app", Started: true}, {Name: "side", Started: true, Exited: true, Code: 1, ExitedAt: at}}},
			guestproto.Msg{Op: guestproto.EvReply, ID: 1}, guestproto.Msg{Op: guestproto.EvOutput, ID: 2, Stream: "stdout", Data: []byte{0, 1, 2}}, guestproto.Msg{Op: guestproto.EvExecExit, ID: 2, Code: 0}),
		lines(guestproto.Msg{Op: guestproto.EvReady, Error: "mount /dev/vdb: no such device"}),
		lines(guestproto.Msg{Op: guestproto.EvStarted, Container: "../../victim"},
			guestproto.Msg{Op: guestproto.EvLog, Container: "app", Stream: "stdout\n2020-01-01T00:00:00Z stderr F forged", Data: []byte("y")},
			guestproto.Msg{Op: guestproto.EvLog, Container: "app", Stream: "stdout", Data: []byte("line\n2020-01-01T00:00:00Z stderr F forged")},
			guestproto.Msg{Op: guestproto.EvExit, Container: "app/../../x"}, guestproto.Msg{Op: guestproto.EvState, State: []guestproto.ContainerState{{Name: "..", Exited: true}}}),
		"{\"op\":\"log\",\"c\":\"app\",\"s\":\"stdout\",\"d\":\"aGk=\"}\nnot json\n{\"op\":\"exit\",\"c\":\"app\",\"code\":1e99}\n{\"op\":\"reply\",\"id\":-1}\n\n{}\n",
		"{\"op\":\"log\",\"c\":\"app\",\"s\":\"stdout\",\"d\":\"" + strings.Repeat("A", 4096) + "\"}",
	}
}

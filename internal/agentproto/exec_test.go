package agentproto_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
)

// fakeTarget runs commands in Go: "upper" copies its input upper-cased to
// stdout and "bye" to stderr, exiting with 5; "size" prints the terminal
// sizes it is given until its input ends; "fail" fails to run.
type fakeTarget struct{}

func (fakeTarget) CheckExec(ctx context.Context, container string) error {
	if container != "app" {
		return errdefs.NotFound("no container %q (containers: app)", container)
	}
	return nil
}

func (fakeTarget) Exec(ctx context.Context, container string, p runtime.ExecProcess) (int, error) {
	switch p.Args[0] {
	case "upper":
		data, _ := io.ReadAll(p.Stdin)
		fmt.Fprint(p.Stdout, strings.ToUpper(string(data))+strings.Join(p.Env, ","))
		fmt.Fprint(p.Stderr, "bye")
		return 5, nil
	case "size":
		if !p.TTY || p.Stderr != nil {
			return -1, fmt.Errorf("size needs a TTY and no stderr")
		}
		first := <-p.Resize
		fmt.Fprintf(p.Stdout, "%dx%d\n", first.Width, first.Height)
		fmt.Fprintf(p.Stdout, "%s\n", p.Args[1:])
		next := <-p.Resize
		fmt.Fprintf(p.Stdout, "%dx%d\n", next.Width, next.Height)
		return 0, nil
	}
	return -1, errdefs.Conflict("cannot run %s", p.Args[0])
}

func TestExecRoundTrip(t *testing.T) {
	key := auth.Key{AccessKeyID: "AKIDEXECTEST00000000", SecretAccessKey: "exec-test-secret-exec-test-secret-000000"}
	v, err := auth.NewVerifier(auth.VerifierConfig{Keys: []auth.Key{key}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /exec", func(w http.ResponseWriter, r *http.Request) {
		agentproto.ServeExec(w, r, fakeTarget{})
	})
	hs := httptest.NewServer(v.Middleware(mux, func(w http.ResponseWriter, r *http.Request, e *auth.AuthError) {
		http.Error(w, e.Message, e.HTTPStatus)
	}))
	defer hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := &agentproto.ExecClient{Key: key}

	var stdout, stderr bytes.Buffer
	code, err := c.Exec(ctx, hs.URL+"/exec", "app", runtime.ExecProcess{Args: []string{"upper", "-c", "a"}, Env: []string{"B=2", "A=1"},
		Stdin: strings.NewReader("hello\n"), Stdout: &stdout, Stderr: &stderr})
	if err != nil || code != 5 || stdout.String() != "HELLO\nB=2,A=1" || stderr.String() != "bye" {
		t.Errorf("upper: code %d, err %v, stdout %q, stderr %q; want 5, \"HELLO\\nB=2,A=1\", \"bye\"", code, err, stdout.String(), stderr.String())
	}

	sizes := make(chan runtime.TerminalSize, 2)
	sizes <- runtime.TerminalSize{Width: 80, Height: 24}
	stdout.Reset()
	go func() {
		time.Sleep(100 * time.Millisecond)
		sizes <- runtime.TerminalSize{Width: 120, Height: 40}
	}()
	code, err = c.Exec(ctx, hs.URL+"/exec", "app", runtime.ExecProcess{Args: []string{"size", "z", "-c", "a"}, TTY: true, Resize: sizes, Stdout: &stdout})
	if err != nil || code != 0 || stdout.String() != "80x24\n[z -c a]\n120x40\n" {
		t.Errorf("size: code %d, err %v, stdout %q; want the initial size, the args in order, then the new size", code, err, stdout.String())
	}

	if _, err := c.Exec(ctx, hs.URL+"/exec", "nope", runtime.ExecProcess{Args: []string{"upper"}}); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "containers: app") {
		t.Errorf("missing container: %v, want NotFound naming the containers", err)
	}
	if _, err := c.Exec(ctx, hs.URL+"/exec", "app", runtime.ExecProcess{Args: []string{"fail"}}); !errdefs.IsConflict(err) {
		t.Errorf("failing exec: %v, want its Conflict kind back", err)
	}
	bad := &agentproto.ExecClient{Key: auth.Key{AccessKeyID: key.AccessKeyID, SecretAccessKey: strings.Repeat("x", 40)}}
	if _, err := bad.Exec(ctx, hs.URL+"/exec", "app", runtime.ExecProcess{Args: []string{"upper"}}); err == nil {
		t.Errorf("an exec signed with a wrong secret ran")
	}
}

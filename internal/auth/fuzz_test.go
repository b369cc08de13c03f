package auth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
)

// fuzzNow is the verifier's clock in FuzzVerify; signed requests are signed
// at this time.
var fuzzNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// Modes of FuzzVerify: how the fuzzed request is (or is not) signed.
const (
	modeRaw         = iota // the fuzzed Authorization and X-Amz-Date headers as they are
	modeSigned             // signed with the verifier's key: must be accepted
	modeWrongSecret        // signed with the right access key ID and another secret
	modeUnknownKey         // signed with an access key ID the verifier does not know
	modeTampered           // signed with the right key, then the body changed
	modeCount
)

// FuzzVerify sends the verifier requests built from fuzzed method, path,
// query, headers and body, as they arrive on the wire (written by Go's HTTP
// client code and read back by the server's parser). Properties:
//   - Verify never panics, and every rejection is an *AuthError with a 4xx
//     status (a 5xx would blame the server for a client's request);
//   - a request signed with the AWS SDK's signer and the verifier's key is
//     accepted, with the signer's region and service;
//   - a request not signed with a key the verifier knows (a raw fuzzed
//     Authorization header, the wrong secret, an unknown access key ID, or a
//     body changed after signing) is never accepted.
func FuzzVerify(f *testing.F) {
	f.Add(uint8(modeSigned), "POST", "/", "", "Content-Type: application/x-amz-json-1.1\nX-Amz-Target: AmazonEC2ContainerServiceV20141113.ListClusters", []byte("{}"), "", "")
	f.Add(uint8(modeSigned), "GET", "/clusters/demo/fargate-profiles", "maxResults=10&nextToken=a%2Fb", "", []byte(nil), "", "")
	f.Add(uint8(modeSigned), "POST", "/some path/with%2Fescapes", "b=2&a=1&a=0", "X-Custom:  two  spaces \nX-Custom: second", []byte(`{"clusters":["default"]}`), "", "")
	f.Add(uint8(modeWrongSecret), "POST", "/", "", "", []byte("{}"), "", "")
	f.Add(uint8(modeUnknownKey), "DELETE", "/clusters/x", "", "", []byte(nil), "", "")
	f.Add(uint8(modeTampered), "POST", "/", "", "", []byte(`{"cluster":"a"}`), "", "")
	f.Add(uint8(modeRaw), "POST", "/", "", "", []byte("{}"),
		"AWS4-HMAC-SHA256 Credential=AKIAVESSELTEST000001/20260314/us-east-1/ecs/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000",
		"20260314T150926Z")
	f.Add(uint8(modeRaw), "POST", "/", "X-Amz-Signature=abc", "", []byte(nil), "", "")
	f.Add(uint8(modeRaw), "GET", "/", "", "", []byte(nil), "AWS4-HMAC-SHA256 Credential=a/b/c/d/e", "x")
	f.Add(uint8(modeRaw), "GET", "/", "", "", []byte(nil),
		"AWS4-HMAC-SHA256 Credential=AKIAVESSELTEST000001/20260314/r/s/aws4_request, SignedHeaders=content-length;host;x-amz-content-sha256;x-amz-date, Signature=ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
		"20260314T150926Z")

	other := Key{AccessKeyID: "AKIAVESSELOTHER00002", SecretAccessKey: "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC1vdGhl"}
	v, err := NewVerifier(VerifierConfig{Keys: []Key{testKey}, Now: func() time.Time { return fuzzNow }, MaxBodyBytes: 1 << 16})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, mode uint8, method, path, query, headers string, body []byte, authz, amzDate string) {
		mode %= modeCount
		if !httpguts.ValidHeaderFieldName(method) { // a method is a token
			return
		}
		u, err := url.Parse("http://vessel.test" + (&url.URL{Path: path}).EscapedPath())
		if err != nil || !strings.HasPrefix(path, "/") {
			return
		}
		u.RawQuery = query
		req, err := http.NewRequest(method, u.String(), nil)
		if err != nil {
			return
		}
		for line := range strings.SplitSeq(headers, "\n") {
			name, val, ok := strings.Cut(line, ":")
			if !ok || !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(val) {
				continue
			}
			switch http.CanonicalHeaderKey(name) {
			case "Host", "Content-Length", "Transfer-Encoding", "Authorization", "X-Amz-Date", "Connection", "Trailer", "Te", "Upgrade", "Expect":
				continue // framing headers: Go's client writes its own
			}
			req.Header.Add(name, val)
		}

		key := testKey
		switch mode {
		case modeRaw:
			if !httpguts.ValidHeaderFieldValue(authz) || !httpguts.ValidHeaderFieldValue(amzDate) {
				return
			}
			req.Header.Set("Authorization", authz)
			req.Header.Set("X-Amz-Date", amzDate)
			setBody(req, body)
		case modeWrongSecret:
			key.SecretAccessKey = other.SecretAccessKey
		case modeUnknownKey:
			key = other
		}
		if mode != modeRaw {
			if err := SignRequest(context.Background(), req, key, "us-east-1", "ecs", body, fuzzNow); err != nil {
				t.Fatalf("SignRequest: %v", err)
			}
			if mode == modeTampered {
				setBody(req, append(bytes.Clone(body), 'x'))
			}
		}

		// What the server reads is what the client writes.
		var wire bytes.Buffer
		if err := req.Write(&wire); err != nil {
			return
		}
		got, err := http.ReadRequest(bufio.NewReader(&wire))
		if err != nil {
			if mode == modeSigned {
				t.Logf("Go's server parser refuses what Go's client wrote (%v); not the verifier's concern", err)
			}
			return
		}

		id, err := v.Verify(got)
		if err != nil {
			var ae *AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("mode %d: Verify returned %T %v, not an *AuthError: the middleware would answer 500", mode, err, err)
			}
			if ae.HTTPStatus < 400 || ae.HTTPStatus > 499 {
				t.Fatalf("mode %d: Verify rejected with status %d (%v); rejections are the client's fault, 4xx", mode, ae.HTTPStatus, ae)
			}
			if ae.Code == "" || ae.Message == "" {
				t.Fatalf("mode %d: rejection %+v lacks a code or message", mode, ae)
			}
			if mode == modeSigned {
				t.Fatalf("a request signed with the SDK signer and the verifier's key was rejected: %v\nrequest:\n%s", err, dump(req, body))
			}
			return
		}
		if mode != modeSigned {
			t.Fatalf("mode %d: Verify accepted a request not signed with a known key as %+v", mode, id)
		}
		if want := (Identity{AccessKeyID: testKey.AccessKeyID, Region: "us-east-1", Service: "ecs", Key: Key{AccessKeyID: testKey.AccessKeyID}}); !reflect.DeepEqual(id, want) {
			t.Fatalf("identity %+v, want %+v", id, want)
		}
	})
}

func setBody(req *http.Request, body []byte) {
	req.ContentLength = int64(len(body))
	if len(body) == 0 {
		req.Body = http.NoBody
		return
	}
	req.Body = readCloser{bytes.NewReader(body)}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func dump(req *http.Request, body []byte) string {
	var b strings.Builder
	b.WriteString(req.Method + " " + req.URL.RequestURI() + "\n")
	req.Header.Write(&b)
	b.WriteString("\n")
	b.Write(body)
	return b.String()
}

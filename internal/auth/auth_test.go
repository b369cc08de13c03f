package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/smithy-go"

	"vessel.dev/vessel/internal/awsclient"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/testenv"
)

var testKey = Key{AccessKeyID: "AKIAVESSELTEST000001", SecretAccessKey: "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNl"}

// seen is what the test handler observed for one verified request.
type seen struct {
	id            Identity
	signedHeaders string
	body          []byte
	path          string
}

type testServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func (s *testServer) last(t *testing.T) seen {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		t.Fatal("the handler saw no verified request")
	}
	return s.reqs[len(s.reqs)-1]
}

func (s *testServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// writeJSONError shapes an AuthError the way the ECS JSON protocol does.
func writeJSONError(w http.ResponseWriter, r *http.Request, e *AuthError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", e.Code)
	w.WriteHeader(e.HTTPStatus)
	json.NewEncoder(w).Encode(map[string]string{"__type": e.Code, "message": e.Message})
}

// newServer starts a server whose handler answers ECS ListClusters with {},
// EKS REST calls with a small JSON document, and anything else by echoing the
// body.
func newServer(t *testing.T, cfg VerifierConfig) *testServer {
	t.Helper()
	if cfg.Keys == nil {
		cfg.Keys = []Key{testKey}
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := IdentityFrom(r.Context())
		if !ok {
			http.Error(w, "no identity in context", http.StatusInternalServerError)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		sh := r.Header.Get("Authorization")
		if i := strings.Index(sh, "SignedHeaders="); i >= 0 {
			sh, _, _ = strings.Cut(sh[i+len("SignedHeaders="):], ",")
		}
		ts.mu.Lock()
		ts.reqs = append(ts.reqs, seen{id: id, signedHeaders: sh, body: body, path: r.URL.Path})
		ts.mu.Unlock()
		switch {
		case r.Header.Get("X-Amz-Target") == "AmazonEC2ContainerServiceV20141113.ListClusters":
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			io.WriteString(w, "{}")
		case r.URL.Path == "/clusters":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"clusters":["demo"]}`)
		case strings.HasPrefix(r.URL.Path, "/clusters/"):
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"cluster":{"name":"`+strings.TrimPrefix(r.URL.Path, "/clusters/")+`","status":"ACTIVE"}}`)
		default:
			w.Write(body)
		}
	})
	ts.Server = httptest.NewServer(v.Middleware(h, writeJSONError))
	t.Cleanup(ts.Close)
	return ts
}

type result struct {
	status        int
	code, message string
	body          []byte
}

func send(t *testing.T, req *http.Request) result {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	res := result{status: resp.StatusCode, body: body}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Type, Message string }
		var raw map[string]string
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatalf("status %d with non-JSON body %q", resp.StatusCode, body)
		}
		e.Type, e.Message = raw["__type"], raw["message"]
		res.code, res.message = e.Type, e.Message
	}
	return res
}

func newReq(t *testing.T, url string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "AmazonEC2ContainerServiceV20141113.DescribeClusters")
	return req
}

func signedReq(t *testing.T, url string, k Key, body []byte, now time.Time) *http.Request {
	t.Helper()
	req := newReq(t, url, body)
	if err := SignRequest(context.Background(), req, k, "us-east-1", "ecs", body, now); err != nil {
		t.Fatal(err)
	}
	return req
}

func TestSignRequestRoundTrip(t *testing.T) {
	srv := newServer(t, VerifierConfig{})
	for _, body := range [][]byte{[]byte(`{"clusters":["default"],"include":["TAGS"]}`), nil} {
		res := send(t, signedReq(t, srv.URL+"/some/path?b=2&a=1", testKey, body, time.Now()))
		if res.status != http.StatusOK {
			t.Fatalf("status %d: %s: %s", res.status, res.code, res.message)
		}
		if !bytes.Equal(res.body, body) {
			t.Fatalf("echoed body %q, sent %q", res.body, body)
		}
		got := srv.last(t)
		want := Identity{AccessKeyID: testKey.AccessKeyID, Region: "us-east-1", Service: "ecs", Key: Key{AccessKeyID: testKey.AccessKeyID}}
		if !reflect.DeepEqual(got.id, want) {
			t.Fatalf("identity %+v, want %+v", got.id, want)
		}
		t.Logf("SignRequest signed %s", got.signedHeaders)
	}
}

func TestECSClient(t *testing.T) {
	srv := newServer(t, VerifierConfig{})
	client := ecs.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider(testKey.AccessKeyID, testKey.SecretAccessKey, ""),
		HTTPClient:  awsclient.HTTPClient(nil),
	}, func(o *ecs.Options) { o.BaseEndpoint = aws.String(srv.URL) })
	if _, err := client.ListClusters(context.Background(), &ecs.ListClustersInput{}); err != nil {
		t.Fatal(err)
	}
	got := srv.last(t)
	if got.id.AccessKeyID != testKey.AccessKeyID || got.id.Service != "ecs" || got.id.Region != "us-east-1" {
		t.Fatalf("identity %+v", got.id)
	}
	if !json.Valid(got.body) {
		t.Fatalf("handler saw body %q, not the SDK's JSON", got.body)
	}
	t.Logf("aws-sdk-go-v2 ECS client signed %s", got.signedHeaders)

	// The same client with a wrong secret sees InvalidSignatureException.
	bad := ecs.NewFromConfig(aws.Config{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider(testKey.AccessKeyID, "wrong"+testKey.SecretAccessKey[5:], ""),
		RetryMaxAttempts: 1,
		HTTPClient:       awsclient.HTTPClient(nil),
	}, func(o *ecs.Options) { o.BaseEndpoint = aws.String(srv.URL) })
	_, err := bad.ListClusters(context.Background(), &ecs.ListClustersInput{})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != CodeInvalidSignature {
		t.Fatalf("wrong secret: got %v, want %s", err, CodeInvalidSignature)
	}
}

func TestEKSClient(t *testing.T) {
	srv := newServer(t, VerifierConfig{})
	client := eks.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider(testKey.AccessKeyID, testKey.SecretAccessKey, ""),
		HTTPClient:  awsclient.HTTPClient(nil),
	}, func(o *eks.Options) { o.BaseEndpoint = aws.String(srv.URL) })
	out, err := client.ListClusters(context.Background(), &eks.ListClustersInput{MaxResults: aws.Int32(10)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Clusters) != 1 || out.Clusters[0] != "demo" {
		t.Fatalf("clusters %v", out.Clusters)
	}
	got := srv.last(t)
	if got.id.Service != "eks" || got.id.AccessKeyID != testKey.AccessKeyID {
		t.Fatalf("identity %+v", got.id)
	}
	t.Logf("aws-sdk-go-v2 EKS client signed %s (GET %s)", got.signedHeaders, got.path)

	// A path that needs escaping exercises the SDK's path canonicalisation.
	d, err := client.DescribeCluster(context.Background(), &eks.DescribeClusterInput{Name: aws.String("my cluster:1")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(d.Cluster.Name) != "my cluster:1" {
		t.Fatalf("cluster name %q", aws.ToString(d.Cluster.Name))
	}
}

func TestAWSCLI(t *testing.T) {
	testenv.SkipShort(t, "the aws CLI")
	const cli = "/usr/bin/aws"
	if _, err := os.Stat(cli); err != nil {
		t.Skipf("the aws CLI is not installed at %s (%v); skipping the real-CLI test", cli, err)
	}
	srv := newServer(t, VerifierConfig{})
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, "ecs", "list-clusters", "--endpoint-url", srv.URL, "--output", "json")
	cmd.Env = cliEnv(home, testKey.AccessKeyID, testKey.SecretAccessKey)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("aws ecs list-clusters: %v\n%s", err, out)
	}
	got := srv.last(t)
	if got.id.AccessKeyID != testKey.AccessKeyID || got.id.Service != "ecs" || got.id.Region != "us-east-1" {
		t.Fatalf("identity %+v", got.id)
	}
	t.Logf("aws CLI signed %s; printed %s", got.signedHeaders, bytes.TrimSpace(out))

	// And with a wrong secret the CLI reports our error.
	n := srv.count()
	cmd = exec.CommandContext(ctx, cli, "ecs", "list-clusters", "--endpoint-url", srv.URL)
	cmd.Env = cliEnv(home, testKey.AccessKeyID, "not-the-secret")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), CodeInvalidSignature) {
		t.Fatalf("wrong secret: err %v, output %s", err, out)
	}
	if srv.count() != n {
		t.Fatal("the handler was reached with a wrong secret")
	}
}

// cliEnv is a clean environment for the aws CLI: nothing from the user's
// own configuration, no instance metadata, no pager, no retries.
func cliEnv(home, akid, secret string) []string {
	return []string{
		"PATH=/usr/bin:/bin",
		"HOME=" + home,
		"AWS_ACCESS_KEY_ID=" + akid,
		"AWS_SECRET_ACCESS_KEY=" + secret,
		"AWS_DEFAULT_REGION=us-east-1",
		"AWS_CONFIG_FILE=" + filepath.Join(home, "config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_PAGER=",
		"AWS_MAX_ATTEMPTS=1",
	}
}

func TestRejections(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	body := []byte(`{"clusters":["default"]}`)
	other := Key{AccessKeyID: "AKIAUNKNOWNUNKNOWN00", SecretAccessKey: testKey.SecretAccessKey}
	wrongSecret := Key{AccessKeyID: testKey.AccessKeyID, SecretAccessKey: "x" + testKey.SecretAccessKey[1:]}

	withAuth := func(authz string) func(t *testing.T, url string) *http.Request {
		return func(t *testing.T, url string) *http.Request {
			req := signedReq(t, url, testKey, body, t0)
			req.Header.Set("Authorization", authz)
			return req
		}
	}
	const goodCred = "Credential=AKIAVESSELTEST000001/20250301/us-east-1/ecs/aws4_request"
	const sig = "Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

	tests := []struct {
		name      string
		now       time.Time
		maxBody   int64
		req       func(t *testing.T, url string) *http.Request
		status    int
		code      string
		msgSubstr string
	}{
		{
			name:   "unsigned",
			req:    func(t *testing.T, url string) *http.Request { return newReq(t, url, body) },
			status: 400, code: CodeUnrecognizedClient, msgSubstr: msgMissingToken,
		},
		{
			name:   "unknown key",
			req:    func(t *testing.T, url string) *http.Request { return signedReq(t, url, other, body, t0) },
			status: 400, code: CodeUnrecognizedClient,
			msgSubstr: "The security token included in the request is invalid: unknown access key ID AKIAUNKNOWNUNKNOWN00",
		},
		{
			name:   "wrong secret",
			req:    func(t *testing.T, url string) *http.Request { return signedReq(t, url, wrongSecret, body, t0) },
			status: 403, code: CodeInvalidSignature, msgSubstr: msgBadSignature,
		},
		{
			name: "tampered body",
			req: func(t *testing.T, url string) *http.Request {
				req := signedReq(t, url, testKey, body, t0)
				evil := bytes.Replace(body, []byte("default"), []byte("prod123"), 1)
				req.Body = io.NopCloser(bytes.NewReader(evil))
				return req
			},
			status: 403, code: CodeInvalidSignature, msgSubstr: msgBadSignature,
		},
		{
			name: "tampered signed header",
			req: func(t *testing.T, url string) *http.Request {
				req := signedReq(t, url, testKey, body, t0)
				req.Header.Set("X-Amz-Target", "AmazonEC2ContainerServiceV20141113.DeleteCluster")
				return req
			},
			status: 403, code: CodeInvalidSignature, msgSubstr: msgBadSignature,
		},
		{
			name: "tampered query",
			req: func(t *testing.T, url string) *http.Request {
				req := signedReq(t, url+"?force=false", testKey, body, t0)
				req.URL.RawQuery = "force=true"
				return req
			},
			status: 403, code: CodeInvalidSignature, msgSubstr: msgBadSignature,
		},
		{
			name:   "expired",
			now:    t0.Add(6 * time.Minute),
			req:    func(t *testing.T, url string) *http.Request { return signedReq(t, url, testKey, body, t0) },
			status: 403, code: CodeInvalidSignature,
			msgSubstr: "Signature expired: 20250301T120000Z is now earlier than 20250301T120100Z (20250301T120600Z - 5 min.)",
		},
		{
			name:   "from the future",
			now:    t0.Add(-6 * time.Minute),
			req:    func(t *testing.T, url string) *http.Request { return signedReq(t, url, testKey, body, t0) },
			status: 403, code: CodeInvalidSignature, msgSubstr: "Signature not yet current",
		},
		{
			name: "missing X-Amz-Date",
			req: func(t *testing.T, url string) *http.Request {
				req := signedReq(t, url, testKey, body, t0)
				req.Header.Del("X-Amz-Date")
				return req
			},
			status: 400, code: CodeIncompleteSignature, msgSubstr: "X-Amz-Date",
		},
		{
			name:   "wrong algorithm",
			req:    withAuth("AWS " + testKey.AccessKeyID + ":abc"),
			status: 400, code: CodeIncompleteSignature, msgSubstr: "accepts only AWS4-HMAC-SHA256",
		},
		{
			name:   "missing signature",
			req:    withAuth("AWS4-HMAC-SHA256 " + goodCred + ", SignedHeaders=host;x-amz-date"),
			status: 400, code: CodeIncompleteSignature, msgSubstr: "requires Signature parameter",
		},
		{
			name:   "missing credential and signed headers",
			req:    withAuth("AWS4-HMAC-SHA256 " + sig),
			status: 400, code: CodeIncompleteSignature, msgSubstr: "requires Credential, SignedHeaders parameter",
		},
		{
			name:   "short credential",
			req:    withAuth("AWS4-HMAC-SHA256 Credential=AKIAVESSELTEST000001/20250301/us-east-1, SignedHeaders=host;x-amz-date, " + sig),
			status: 400, code: CodeIncompleteSignature, msgSubstr: "5 '/'-separated parts",
		},
		{
			name:   "scope date differs",
			req:    withAuth("AWS4-HMAC-SHA256 Credential=AKIAVESSELTEST000001/20250302/us-east-1/ecs/aws4_request, SignedHeaders=host;x-amz-date, " + sig),
			status: 400, code: CodeIncompleteSignature, msgSubstr: "does not match X-Amz-Date",
		},
		{
			name:   "signed headers without host",
			req:    withAuth("AWS4-HMAC-SHA256 " + goodCred + ", SignedHeaders=x-amz-date, " + sig),
			status: 400, code: CodeIncompleteSignature, msgSubstr: "must include host",
		},
		{
			name:   "signed header absent",
			req:    withAuth("AWS4-HMAC-SHA256 " + goodCred + ", SignedHeaders=host;x-amz-date;x-custom, " + sig),
			status: 400, code: CodeIncompleteSignature, msgSubstr: `"x-custom", but the request has no such header`,
		},
		{
			name:   "non-hex signature",
			req:    withAuth("AWS4-HMAC-SHA256 " + goodCred + ", SignedHeaders=host;x-amz-date, Signature=zz"),
			status: 400, code: CodeIncompleteSignature, msgSubstr: "64 hex characters",
		},
		{
			name:   "user-agent signed",
			req:    withAuth("AWS4-HMAC-SHA256 " + goodCred + ", SignedHeaders=content-length;content-type;host;user-agent;x-amz-date;x-amz-target, " + sig),
			status: 403, code: CodeInvalidSignature, msgSubstr: "the client signed user-agent, which the AWS SDK signer never signs",
		},
		{
			name: "presigned query",
			req: func(t *testing.T, url string) *http.Request {
				return newReq(t, url+"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc", body)
			},
			status: 400, code: CodeIncompleteSignature, msgSubstr: "presigned URL",
		},
		{
			name: "content sha256 mismatch",
			req: func(t *testing.T, url string) *http.Request {
				req := newReq(t, url, body)
				req.Header.Set("X-Amz-Content-Sha256", strings.Repeat("ab", 32))
				if err := SignRequest(context.Background(), req, testKey, "us-east-1", "ecs", body, t0); err != nil {
					t.Fatal(err)
				}
				return req
			},
			status: 403, code: CodeInvalidSignature, msgSubstr: "X-Amz-Content-Sha256 does not match",
		},
		{
			name: "unsigned payload",
			req: func(t *testing.T, url string) *http.Request {
				req := newReq(t, url, body)
				req.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
				if err := SignRequest(context.Background(), req, testKey, "us-east-1", "ecs", body, t0); err != nil {
					t.Fatal(err)
				}
				return req
			},
			status: 400, code: CodeIncompleteSignature, msgSubstr: "requires signed payloads",
		},
		{
			name:    "body too large",
			maxBody: 8,
			req:     func(t *testing.T, url string) *http.Request { return signedReq(t, url, testKey, body, t0) },
			status:  413, code: CodeRequestEntityTooLong, msgSubstr: "8-byte limit",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = t0.Add(time.Minute)
			}
			srv := newServer(t, VerifierConfig{Now: func() time.Time { return now }, MaxBodyBytes: tc.maxBody})
			res := send(t, tc.req(t, srv.URL))
			if res.status != tc.status || res.code != tc.code || !strings.Contains(res.message, tc.msgSubstr) {
				t.Fatalf("got %d %s %q\nwant %d %s containing %q", res.status, res.code, res.message, tc.status, tc.code, tc.msgSubstr)
			}
			if srv.count() != 0 {
				t.Fatal("the handler was reached")
			}
		})
	}

	// The same content-sha256 header with the right hash is accepted.
	t.Run("content sha256 match", func(t *testing.T) {
		srv := newServer(t, VerifierConfig{Now: func() time.Time { return t0 }})
		req := newReq(t, srv.URL, body)
		req.Header.Set("X-Amz-Content-Sha256", sha256hex(body))
		if err := SignRequest(context.Background(), req, testKey, "us-east-1", "ecs", body, t0); err != nil {
			t.Fatal(err)
		}
		if res := send(t, req); res.status != 200 {
			t.Fatalf("%d %s %s", res.status, res.code, res.message)
		}
		if !strings.Contains(srv.last(t).signedHeaders, "x-amz-content-sha256") {
			t.Fatalf("signed headers %s", srv.last(t).signedHeaders)
		}
	})
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestVerifyAuthErrorKinds(t *testing.T) {
	v, err := NewVerifier(VerifierConfig{Keys: []Key{testKey}})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("{}"))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x")
	_, err = v.Verify(req)
	var ae *AuthError
	if !errors.As(err, &ae) || ae.Code != CodeIncompleteSignature || !errdefs.IsInvalidArgument(err) {
		t.Fatalf("got %v", err)
	}
}

func TestNewVerifierRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]VerifierConfig{
		"no keys":       {},
		"empty secret":  {Keys: []Key{{AccessKeyID: "AKIA1"}}},
		"duplicate":     {Keys: []Key{testKey, testKey}},
		"negative skew": {Keys: []Key{testKey}, MaxSkew: -time.Second},
	} {
		if _, err := NewVerifier(cfg); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: got %v, want an invalid-argument error", name, err)
		}
	}
}

func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	keys, created, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !created || len(keys) != 1 {
		t.Fatalf("created=%v keys=%v", created, keys)
	}
	k := keys[0]
	if !regexp.MustCompile(`^AKIA[A-Z2-7]{16}$`).MatchString(k.AccessKeyID) {
		t.Errorf("access key ID %q is not AKIA + 16 base32 characters", k.AccessKeyID)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9+/]{40}$`).MatchString(k.SecretAccessKey) {
		t.Errorf("secret %q is not 40 base64 characters", k.SecretAccessKey)
	}
	if k.Name != "admin" || k.Policy != PolicyAdmin {
		t.Errorf("first key is %q with policy %q, want admin/admin", k.Name, k.Policy)
	}
	for _, name := range []string{CredentialsFile, MasterKeyFile} {
		path := filepath.Join(dir, name)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %04o, want 0600", name, st.Mode().Perm())
		}
		data, _ := os.ReadFile(path)
		if bytes.Contains(data, []byte(k.SecretAccessKey)) {
			t.Errorf("%s holds the secret in clear", name)
		}
	}
	dst, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if dst.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %04o, want 0700", dst.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("data directory holds %d entries, want only %s and %s (a temp file left behind?)", len(ents), CredentialsFile, MasterKeyFile)
	}

	again, created, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if created || len(again) != 1 || !reflect.DeepEqual(again[0], k) {
		t.Fatalf("second call: created=%v keys=%v, want the first key %v", created, again, k)
	}

	// The generated key verifies.
	srv := newServer(t, VerifierConfig{Keys: again})
	if res := send(t, signedReq(t, srv.URL, k, []byte("{}"), time.Now())); res.status != 200 {
		t.Fatalf("%d %s %s", res.status, res.code, res.message)
	}

	path := filepath.Join(dir, CredentialsFile)
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	_, _, err = LoadOrCreate(dir)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "chmod 600 "+path) {
		t.Fatalf("group-readable file: got %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}

	// Another master key does not open the sealed key.
	other := Local{DataDir: dir, MasterKeyFile: filepath.Join(t.TempDir(), "other.key")}
	if _, _, err := LoadMasterKey(other.MasterKeyFile, true); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Load(); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("load with another master key: %v, want invalid argument naming the master key", err)
	}
	if err := os.WriteFile(other.MasterKeyFile, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Load(); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "exactly 32") {
		t.Fatalf("short master key: %v", err)
	}
}

func TestLocalLegacyFile(t *testing.T) {
	dir := t.TempDir()
	legacy := filepath.Join(dir, LegacyCredentialsFile)
	if err := os.WriteFile(legacy, mustJSON(t, []Key{testKey}), 0o600); err != nil {
		t.Fatal(err)
	}
	l := Local{DataDir: dir}
	// Before the server migrates it, the CLI still signs with it.
	if k, err := l.Load(); err != nil || k.AccessKeyID != testKey.AccessKeyID {
		t.Fatalf("Load of a legacy file = %+v, %v", k, err)
	}
	keys, err := l.ReadLegacy()
	if err != nil || len(keys) != 1 {
		t.Fatalf("ReadLegacy = %v, %v", keys, err)
	}
	if err := l.Save(keys[0]); err != nil {
		t.Fatal(err)
	}
	if err := l.RemoveLegacy(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(legacy); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("legacy file still there: %v", err)
	}
	if k, err := l.Load(); err != nil || k.SecretAccessKey != testKey.SecretAccessKey {
		t.Fatalf("Load after migration = %+v, %v", k, err)
	}
	if err := os.WriteFile(legacy, []byte(`{"not":"a list"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReadLegacy(); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("malformed legacy file: got %v", err)
	}
}

func TestSealer(t *testing.T) {
	s, created, err := LoadMasterKey(filepath.Join(t.TempDir(), "m.key"), true)
	if err != nil || !created {
		t.Fatal(created, err)
	}
	sealed, err := SealKey(s, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte(testKey.SecretAccessKey)) {
		t.Fatalf("sealed key %s holds the secret in clear", sealed)
	}
	k, err := OpenKey(s, sealed)
	if err != nil || !reflect.DeepEqual(k, testKey) {
		t.Fatalf("OpenKey = %+v, %v", k, err)
	}
	// The sealed secret is bound to its access key ID.
	moved := bytes.Replace(sealed, []byte(testKey.AccessKeyID), []byte("AKIAVESSELTEST000002"), 1)
	if _, err := OpenKey(s, moved); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("a sealed secret moved to another key opened: %v", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExportLines(t *testing.T) {
	got := ExportLines(testKey, "http://127.0.0.1:8080", "us-east-1")
	want := "export AWS_ACCESS_KEY_ID=AKIAVESSELTEST000001\n" +
		"export AWS_SECRET_ACCESS_KEY=c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNl\n" +
		"export AWS_DEFAULT_REGION=us-east-1\n" +
		"# then try: aws ecs list-clusters --endpoint-url http://127.0.0.1:8080\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if q := shellQuote("a b'c"); q != `'a b'\''c'` {
		t.Fatalf("shellQuote: %s", q)
	}
}

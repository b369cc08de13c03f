package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"vessel.dev/vessel/internal/errdefs"
)

const (
	// DefaultMaxSkew is how far X-Amz-Date may be from the verifier's clock,
	// as in AWS.
	DefaultMaxSkew = 5 * time.Minute
	// DefaultMaxBodyBytes caps the request body the verifier buffers.
	DefaultMaxBodyBytes = 10 << 20

	algorithm     = "AWS4-HMAC-SHA256"
	amzDateLayout = "20060102T150405Z"
	scopeTerminal = "aws4_request"
)

// AWS error codes returned in AuthError.Code.
const (
	CodeUnrecognizedClient   = "UnrecognizedClientException"
	CodeInvalidSignature     = "InvalidSignatureException"
	CodeIncompleteSignature  = "IncompleteSignatureException"
	CodeRequestEntityTooLong = "RequestEntityTooLargeException"
)

const (
	msgMissingToken = "Missing Authentication Token: sign requests with AWS Signature Version 4 (run `vessel credentials`)"
	msgBadSignature = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
)

// AuthError is a rejected request, already carrying the AWS error code and
// HTTP status it should be answered with. The API layer shapes it for its
// protocol.
type AuthError struct {
	Code       string
	Message    string
	HTTPStatus int

	kind error // errdefs kind, if any
}

func (e *AuthError) Error() string { return e.Code + ": " + e.Message }

// Unwrap returns the errdefs kind of the error, if it has one: malformed
// signatures are errdefs.ErrInvalidArgument, oversized bodies
// errdefs.ErrLimitExceeded.
func (e *AuthError) Unwrap() error { return e.kind }

func incomplete(format string, args ...any) *AuthError {
	return &AuthError{Code: CodeIncompleteSignature, Message: fmt.Sprintf(format, args...), HTTPStatus: http.StatusBadRequest, kind: errdefs.ErrInvalidArgument}
}

func badSignature(detail string) *AuthError {
	msg := msgBadSignature
	if detail != "" {
		msg += " " + detail
	}
	return &AuthError{Code: CodeInvalidSignature, Message: msg, HTTPStatus: http.StatusForbidden}
}

// Identity is who signed a verified request, and for which credential scope.
// The verifier does not check Region or Service against anything; callers
// that care (an ECS endpoint receiving an "eks" scope) check them.
type Identity struct {
	AccessKeyID string
	Region      string
	Service     string
	// Key is the signing key without its secret: its name, policy and
	// host.
	Key Key
}

// Allows reports whether the signing key's policy allows action (see
// Key.Allows).
func (id Identity) Allows(action string) bool { return id.Key.Allows(action) }

type identityKey struct{}

// WithIdentity returns a context carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity Middleware stored in ctx, and whether
// there was one.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Keys are the accepted access keys; or Keyring.
	Keys []Key
	// Keyring is where accepted keys are looked up; it takes precedence
	// over Keys. One of the two is required.
	Keyring Keyring
	// Now is the clock; default time.Now.
	Now func() time.Time
	// MaxSkew is how far X-Amz-Date may be from Now; default DefaultMaxSkew.
	MaxSkew time.Duration
	// MaxBodyBytes caps the body Verify buffers; default DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

// Verifier checks SigV4-signed requests against a fixed set of keys. It is
// safe for concurrent use.
type Verifier struct {
	keys    Keyring
	now     func() time.Time
	maxSkew time.Duration
	maxBody int64
}

// NewVerifier returns a Verifier for cfg, filling defaults. It returns an
// error of kind errdefs.ErrInvalidArgument if there are no keys, a key is
// incomplete or repeated, or a limit is negative.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Keyring == nil {
		if err := validateKeys(cfg.Keys); err != nil {
			return nil, fmt.Errorf("auth: verifier: %w", err)
		}
	}
	if cfg.MaxSkew < 0 {
		return nil, errdefs.InvalidArgument("auth: verifier: MaxSkew %v is negative; use 0 for the default %v", cfg.MaxSkew, DefaultMaxSkew)
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, errdefs.InvalidArgument("auth: verifier: MaxBodyBytes %d is negative; use 0 for the default %d", cfg.MaxBodyBytes, DefaultMaxBodyBytes)
	}
	v := &Verifier{
		keys:    cfg.Keyring,
		now:     cfg.Now,
		maxSkew: cfg.MaxSkew,
		maxBody: cfg.MaxBodyBytes,
	}
	if v.keys == nil {
		v.keys = NewStaticKeyring(cfg.Keys...)
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.maxSkew == 0 {
		v.maxSkew = DefaultMaxSkew
	}
	if v.maxBody == 0 {
		v.maxBody = DefaultMaxBodyBytes
	}
	return v, nil
}

// Middleware verifies each request before passing it to next with the
// Identity in its context (see IdentityFrom). A rejected request is answered
// by writeError, which shapes the AuthError for the caller's protocol; next is
// not called. The request body remains readable by next.
func (v *Verifier) Middleware(next http.Handler, writeError func(w http.ResponseWriter, r *http.Request, e *AuthError)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := v.Verify(r)
		if err != nil {
			var ae *AuthError
			if !errors.As(err, &ae) {
				ae = &AuthError{Code: "InternalFailure", Message: err.Error(), HTTPStatus: http.StatusInternalServerError}
			}
			writeError(w, r, ae)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	})
}

// authHeader is a parsed "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
// Signature=..." header.
type authHeader struct {
	accessKeyID, date, region, service string
	signedHeaders                      []string
	signature                          string
}

// Verify checks r's SigV4 signature and returns who signed it. It reads the
// whole body (up to the configured cap) and replaces r.Body with a buffered
// copy, so the body stays readable. A rejected request yields an *AuthError.
// Verify does not block beyond reading the body.
func (v *Verifier) Verify(r *http.Request) (Identity, error) {
	q := r.URL.Query()
	authz := r.Header.Values("Authorization")
	if len(authz) == 0 || (len(authz) == 1 && strings.TrimSpace(authz[0]) == "") {
		if q.Has("X-Amz-Signature") || q.Has("X-Amz-Credential") || q.Has("X-Amz-Algorithm") {
			return Identity{}, incomplete("Query-string (presigned URL) authentication is not supported by Vessel: sign requests with the Authorization header (AWS Signature Version 4)")
		}
		return Identity{}, &AuthError{Code: CodeUnrecognizedClient, Message: msgMissingToken, HTTPStatus: http.StatusBadRequest}
	}
	if len(authz) > 1 {
		return Identity{}, incomplete("Request carries %d Authorization headers; send exactly one", len(authz))
	}
	ah, aerr := parseAuthorization(authz[0])
	if aerr != nil {
		return Identity{}, aerr
	}

	amzDate := r.Header.Values("X-Amz-Date")
	if len(amzDate) != 1 || amzDate[0] == "" {
		return Identity{}, incomplete("Authorization header requires an X-Amz-Date header in the form 20060102T150405Z (the Date header is not accepted)")
	}
	signingTime, err := time.Parse(amzDateLayout, amzDate[0])
	if err != nil {
		return Identity{}, incomplete("X-Amz-Date %q is not in the form 20060102T150405Z", amzDate[0])
	}
	if ah.date != amzDate[0][:8] {
		return Identity{}, incomplete("Credential scope date %s does not match X-Amz-Date %s", ah.date, amzDate[0])
	}

	key, err := v.keys.Lookup(r.Context(), ah.accessKeyID)
	if err != nil && !errdefs.IsNotFound(err) {
		return Identity{}, fmt.Errorf("auth: look up access key: %w", err)
	}
	secret := key.SecretAccessKey
	if err != nil {
		return Identity{}, &AuthError{Code: CodeUnrecognizedClient,
			Message:    "The security token included in the request is invalid: unknown access key ID " + ah.accessKeyID,
			HTTPStatus: http.StatusBadRequest}
	}

	now := v.now().UTC()
	if signingTime.Before(now.Add(-v.maxSkew)) {
		return Identity{}, &AuthError{Code: CodeInvalidSignature, HTTPStatus: http.StatusForbidden,
			Message: fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - %s.)",
				amzDate[0], now.Add(-v.maxSkew).Format(amzDateLayout), now.Format(amzDateLayout), skewText(v.maxSkew))}
	}
	if signingTime.After(now.Add(v.maxSkew)) {
		return Identity{}, &AuthError{Code: CodeInvalidSignature, HTTPStatus: http.StatusForbidden,
			Message: fmt.Sprintf("Signature not yet current: %s is still later than %s (%s + %s.)",
				amzDate[0], now.Add(v.maxSkew).Format(amzDateLayout), now.Format(amzDateLayout), skewText(v.maxSkew))}
	}

	body, aerr := v.readBody(r)
	if aerr != nil {
		return Identity{}, aerr
	}
	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	if slices.Contains(ah.signedHeaders, "x-amz-content-sha256") {
		// The client signed its own statement of the payload hash; it must
		// be the hash of this body. UNSIGNED-PAYLOAD and the STREAMING-*
		// forms are S3-only and not accepted.
		claimed := strings.ToLower(strings.TrimSpace(r.Header.Get("X-Amz-Content-Sha256")))
		if claimed != payloadHash {
			if _, err := hex.DecodeString(claimed); err != nil || len(claimed) != 64 {
				return Identity{}, incomplete("X-Amz-Content-Sha256 %q is not accepted: Vessel requires signed payloads, so send the hex SHA-256 of the body or leave the header out", r.Header.Get("X-Amz-Content-Sha256"))
			}
			return Identity{}, badSignature("(X-Amz-Content-Sha256 does not match the SHA-256 of the request body.)")
		}
	}

	// Re-sign a copy of the request that carries only the headers the client
	// signed, with the SDK's signer, and compare.
	cp, aerr := signingCopy(r, ah.signedHeaders, int64(len(body)))
	if aerr != nil {
		return Identity{}, aerr
	}
	creds := aws.Credentials{AccessKeyID: ah.accessKeyID, SecretAccessKey: secret}
	// A signer per request: the SDK signer caches the derived signing key
	// by service and region and checks only the access key ID and the day
	// against it, so a shared signer kept verifying a rotated key's old
	// secret for the rest of the day.
	if err := v4.NewSigner().SignHTTP(r.Context(), creds, cp, payloadHash, ah.service, ah.region, signingTime); err != nil {
		return Identity{}, fmt.Errorf("auth: re-sign request: %w", err)
	}
	ours, aerr := parseAuthorization(cp.Header.Get("Authorization"))
	if aerr != nil {
		return Identity{}, fmt.Errorf("auth: parse the SDK signer's Authorization header: %w", aerr)
	}
	if !slices.Equal(ours.signedHeaders, ah.signedHeaders) {
		return Identity{}, badSignature(signedHeadersDiff(ah.signedHeaders, ours.signedHeaders))
	}
	if !hmac.Equal([]byte(ours.signature), []byte(ah.signature)) {
		return Identity{}, badSignature("")
	}
	key.SecretAccessKey = ""
	return Identity{AccessKeyID: ah.accessKeyID, Region: ah.region, Service: ah.service, Key: key}, nil
}

func skewText(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%d min", int(d/time.Minute))
	}
	return d.String()
}

// readBody buffers r's body, capped at v.maxBody, and puts a fresh reader
// back on r.
func (v *Verifier) readBody(r *http.Request) ([]byte, *AuthError) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	tooLarge := &AuthError{Code: CodeRequestEntityTooLong, HTTPStatus: http.StatusRequestEntityTooLarge,
		Message: fmt.Sprintf("Request body is larger than the %d-byte limit Vessel accepts", v.maxBody),
		kind:    errdefs.ErrLimitExceeded}
	if r.ContentLength > v.maxBody {
		return nil, tooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, v.maxBody+1))
	r.Body.Close()
	if err != nil {
		return nil, incomplete("Could not read the request body: %v", err)
	}
	if int64(len(body)) > v.maxBody {
		return nil, tooLarge
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return body, nil
}

// signingCopy builds the request the SDK signer re-signs: same method, host,
// path and query as r, and only the headers named in signed. The SDK signer
// always signs host, and signs content-length exactly when ContentLength > 0,
// so ContentLength is the body length only if the client signed
// content-length.
func signingCopy(r *http.Request, signed []string, bodyLen int64) (*http.Request, *AuthError) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	h := make(http.Header, len(signed))
	var contentLength int64
	for _, name := range signed {
		switch name {
		case "host":
			continue
		case "content-length":
			if r.ContentLength >= 0 && r.ContentLength != bodyLen {
				return nil, incomplete("Content-Length %d does not match the %d-byte body", r.ContentLength, bodyLen)
			}
			contentLength = bodyLen
			continue
		}
		vals := r.Header.Values(name)
		if len(vals) == 0 {
			return nil, incomplete("SignedHeaders names %q, but the request has no such header", name)
		}
		for _, val := range vals {
			h.Add(name, val)
		}
	}
	cp := &http.Request{
		Method: r.Method,
		URL: &url.URL{
			Scheme:   scheme,
			Host:     r.Host,
			Path:     r.URL.Path,
			RawPath:  r.URL.RawPath,
			RawQuery: r.URL.RawQuery,
		},
		Host:          r.Host,
		Header:        h,
		ContentLength: contentLength,
	}
	return cp.WithContext(r.Context()), nil
}

// signedHeadersDiff explains why the client's SignedHeaders differ from what
// the SDK signer signs for the same request.
func signedHeadersDiff(client, ours []string) string {
	var notOurs, notClients []string
	for _, h := range client {
		if !slices.Contains(ours, h) {
			notOurs = append(notOurs, h)
		}
	}
	for _, h := range ours {
		if !slices.Contains(client, h) {
			notClients = append(notClients, h)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "(SignedHeaders %q differ from the %q Vessel's AWS SDK signer produces for this request", strings.Join(client, ";"), strings.Join(ours, ";"))
	if len(notOurs) > 0 {
		fmt.Fprintf(&b, "; the client signed %s, which the AWS SDK signer never signs (User-Agent, Expect, Transfer-Encoding, X-Amzn-Trace-Id and Authorization are excluded, and Content-Length only when the body is non-empty)", strings.Join(notOurs, ", "))
	}
	if len(notClients) > 0 {
		fmt.Fprintf(&b, "; the client did not sign %s, which the AWS SDK signer always signs", strings.Join(notClients, ", "))
	}
	b.WriteString(".)")
	return b.String()
}

// parseAuthorization parses an "AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/
// SERVICE/aws4_request, SignedHeaders=a;b;c, Signature=hex" header.
func parseAuthorization(s string) (authHeader, *AuthError) {
	var ah authHeader
	s = strings.TrimSpace(s)
	alg, rest, _ := strings.Cut(s, " ")
	if alg != algorithm {
		return ah, incomplete("Authorization header uses algorithm %q; Vessel accepts only %s (AWS Signature Version 4)", alg, algorithm)
	}
	var credential, signedHeaders, signature string
	var haveCred, haveSH, haveSig bool
	for part := range strings.SplitSeq(rest, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			return ah, incomplete("Authorization header component %q is not of the form Name=value", part)
		}
		switch k {
		case "Credential":
			credential, haveCred = val, true
		case "SignedHeaders":
			signedHeaders, haveSH = val, true
		case "Signature":
			signature, haveSig = val, true
		default:
			return ah, incomplete("Authorization header has unknown component %q; expected Credential, SignedHeaders and Signature", k)
		}
	}
	var missing []string
	if !haveCred || credential == "" {
		missing = append(missing, "Credential")
	}
	if !haveSH || signedHeaders == "" {
		missing = append(missing, "SignedHeaders")
	}
	if !haveSig || signature == "" {
		missing = append(missing, "Signature")
	}
	if len(missing) > 0 {
		return ah, incomplete("Authorization header requires %s parameter(s); it must read: %s Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=h1;h2, Signature=hex",
			strings.Join(missing, ", "), algorithm)
	}

	parts := strings.Split(credential, "/")
	if len(parts) != 5 {
		return ah, incomplete("Credential %q must have 5 '/'-separated parts: AKID/DATE/REGION/SERVICE/aws4_request", credential)
	}
	ah.accessKeyID, ah.date, ah.region, ah.service = parts[0], parts[1], parts[2], parts[3]
	if ah.accessKeyID == "" || ah.region == "" || ah.service == "" {
		return ah, incomplete("Credential %q has an empty access key ID, region or service", credential)
	}
	if _, err := time.Parse("20060102", ah.date); err != nil || len(ah.date) != 8 {
		return ah, incomplete("Credential %q has date %q; expected YYYYMMDD", credential, ah.date)
	}
	if parts[4] != scopeTerminal {
		return ah, incomplete("Credential %q must end in /%s", credential, scopeTerminal)
	}

	ah.signedHeaders = strings.Split(signedHeaders, ";")
	for i, h := range ah.signedHeaders {
		if h == "" || h != strings.ToLower(h) {
			return ah, incomplete("SignedHeaders %q must be a ';'-separated list of lowercase header names", signedHeaders)
		}
		if i > 0 && ah.signedHeaders[i-1] >= h {
			return ah, incomplete("SignedHeaders %q must be sorted and without repeats", signedHeaders)
		}
	}
	if !slices.Contains(ah.signedHeaders, "host") {
		return ah, incomplete("SignedHeaders %q must include host", signedHeaders)
	}

	if len(signature) != 64 {
		return ah, incomplete("Signature must be 64 hex characters, got %d", len(signature))
	}
	if _, err := hex.DecodeString(signature); err != nil {
		return ah, incomplete("Signature %q is not hexadecimal", signature)
	}
	ah.signature = strings.ToLower(signature)
	return ah, nil
}

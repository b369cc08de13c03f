package agentproto

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/tlsutil"
)

// CAPath is where the control plane serves its CA certificate, unsigned,
// for joining hosts to check against the hash their join token came with.
const CAPath = "/agent/v1/ca"

// JoinPath is where a host presents its join token.
const JoinPath = "/agent/v1/join"

// JoinRequest is what a host presents on JoinPath.
type JoinRequest struct {
	Token  string `json:"token"`
	HostID string `json:"hostId"`
}

// JoinResponse is the credential a joining host receives.
type JoinResponse struct {
	HostID          string `json:"hostId"`
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
	// CABundle is the PEM CA the control plane's certificate chains to;
	// empty when its API speaks plain HTTP (loopback).
	CABundle string `json:"caBundle,omitempty"`
}

// DiscoverCA fetches the control plane's CA from endpoint (https) without
// trusting anything yet, and returns it only if its SubjectPublicKeyInfo
// hash is caHash ("sha256:<hex>"): kubeadm's token discovery. The returned
// PEM is then the only root the host trusts.
func DiscoverCA(ctx context.Context, endpoint, caHash string) ([]byte, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "https" {
		return nil, errdefs.InvalidArgument("control plane endpoint %q is not an https URL: --ca-cert-hash pins a CA, which needs TLS", endpoint)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Nothing is trusted yet: what is read is checked against the hash.
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	u.Path = strings.TrimSuffix(u.Path, "/") + CAPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, errdefs.Unavailable("fetching the control plane's CA: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, errdefs.Unavailable("fetching the control plane's CA: HTTP %d %s %v", resp.StatusCode, data, err)
	}
	ca, err := tlsutil.ParseCertPEM(data)
	if err != nil {
		return nil, fmt.Errorf("the control plane's CA: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if got := tlsutil.SPKIHash(ca); got != strings.ToLower(strings.TrimSpace(caHash)) {
		return nil, fmt.Errorf("the control plane's CA has hash %s, not %s (--ca-cert-hash): this is not the control plane the token was made for: %w", got, caHash, ErrAccessDenied)
	}
	return data, nil
}

// Join presents token for hostID to the control plane at endpoint, over
// TLS trusting only the CA in caPEM (nil: plain HTTP, loopback only), and
// returns the host's credential.
func Join(ctx context.Context, endpoint string, caPEM []byte, token, hostID string) (JoinResponse, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return JoinResponse{}, errdefs.InvalidArgument("control plane endpoint %q is not an http(s) URL", endpoint)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	if caPEM != nil {
		cfg, err := tlsutil.ClientConfig(caPEM)
		if err != nil {
			return JoinResponse{}, err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = cfg
		hc.Transport = tr
	}
	body, _ := json.Marshal(JoinRequest{Token: token, HostID: hostID})
	u.Path = strings.TrimSuffix(u.Path, "/") + JoinPath
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return JoinResponse{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return JoinResponse{}, errdefs.Unavailable("joining the control plane at %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return JoinResponse{}, errdefs.Unavailable("reading the control plane's answer: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb ErrorBody
		json.Unmarshal(data, &eb)
		for _, k := range kinds {
			if eb.Kind == k.name {
				return JoinResponse{}, fmt.Errorf("join refused: %s: %w", eb.Message, k.kind)
			}
		}
		return JoinResponse{}, fmt.Errorf("join refused: HTTP %d: %s", resp.StatusCode, data)
	}
	var out JoinResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return JoinResponse{}, fmt.Errorf("the control plane's join answer: %w", err)
	}
	return out, nil
}

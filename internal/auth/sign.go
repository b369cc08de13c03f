package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// SignRequest signs r in place with SigV4 for key k, region and service at
// time now, using the AWS SDK's signer. body is the whole request body: it is
// set as r's body (and ContentLength) so what is signed is what is sent. It
// is for Vessel's own agent-to-server calls; it does not block.
func SignRequest(ctx context.Context, r *http.Request, k Key, region, service string, body []byte, now time.Time) error {
	sum := sha256.Sum256(body)
	r.ContentLength = int64(len(body))
	if len(body) == 0 {
		r.Body = http.NoBody
		r.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
	} else {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	creds := aws.Credentials{AccessKeyID: k.AccessKeyID, SecretAccessKey: k.SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, r, hex.EncodeToString(sum[:]), service, region, now); err != nil {
		return fmt.Errorf("auth: sign %s %s: %w", r.Method, r.URL, err)
	}
	return nil
}

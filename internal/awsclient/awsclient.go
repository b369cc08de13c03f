package awsclient

import (
	"bytes"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// HTTPClient returns next (the SDK's default client when nil) with each
// request's body of known length read into memory before it is sent (see
// the package's documentation). Set it as aws.Config.HTTPClient.
func HTTPClient(next aws.HTTPClient) aws.HTTPClient {
	if next == nil {
		next = awshttp.NewBuildableClient()
	}
	return bodyInMemory{next}
}

type bodyInMemory struct{ next aws.HTTPClient }

func (c bodyInMemory) Do(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength < 0 {
		return c.next.Do(r) // no body, or a stream of unknown length
	}
	data, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("reading the request's body: %w", err)
	}
	if int64(len(data)) != r.ContentLength {
		return nil, fmt.Errorf("the request's body has %d bytes, its Content-Length says %d", len(data), r.ContentLength)
	}
	r = r.Clone(r.Context())
	r.ContentLength = int64(len(data))
	r.Body = io.NopCloser(bytes.NewReader(data))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	return c.next.Do(r)
}

package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"vessel.dev/vessel/api"
)

// TestUnroutedRequestsInProtocolShape: a signed request that matches no
// route (an unclean path such as an empty cluster name, an unknown path, a
// method the path does not take) is answered in its protocol's error
// shape, not with the router's plain-text 404/405 or a redirect. FuzzEKS
// found the redirect: POST /clusters//fargate-profiles got a 307 with an
// empty body.
func TestUnroutedRequestsInProtocolShape(t *testing.T) {
	s := newFuzzServer(t, false)
	for _, c := range []struct {
		method, target, service, amzTarget string
		field                              string // the JSON field that must hold a message
	}{
		{http.MethodPost, "/clusters//fargate-profiles", "eks", "", "message"},
		{http.MethodGet, "/clusters/./fargate-profiles", "eks", "", "message"},
		{http.MethodPut, "/clusters", "eks", "", "message"},
		{http.MethodGet, "/nothing/here", "eks", "", "message"},
		{http.MethodGet, "/", "ecs", api.ECSTargetPrefix + "ListClusters", "message"},
		{http.MethodPost, "//", "ecs", api.ECSTargetPrefix + "ListClusters", "message"},
		{http.MethodGet, "/agent/v1/nope", "vessel", "", "message"},
		{http.MethodPost, "/agent/v1/hosts//status", "vessel", "", "message"},
	} {
		req := httptest.NewRequest(c.method, c.target, nil)
		if c.amzTarget != "" {
			req.Header.Set("X-Amz-Target", c.amzTarget)
		}
		rec := s.do(t, req, c.service, nil)
		var out map[string]any
		if rec.Code < 400 || rec.Code > 499 || json.Unmarshal(rec.Body.Bytes(), &out) != nil || out[c.field] == "" || out[c.field] == nil {
			t.Errorf("%s %s: %d %q %q, want a 4xx JSON error with a %s", c.method, c.target, rec.Code, rec.Header().Get("Content-Type"), rec.Body, c.field)
			continue
		}
		if c.service != "vessel" && rec.Header().Get("X-Amzn-ErrorType") == "" {
			t.Errorf("%s %s: no X-Amzn-ErrorType: %s", c.method, c.target, rec.Body)
		}
		if c.service == "vessel" && out["kind"] == nil {
			t.Errorf("%s %s: agent error without a kind: %s", c.method, c.target, rec.Body)
		}
	}
}

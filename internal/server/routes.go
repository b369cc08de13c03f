package server

import (
	"net/http"
	"path"
	"strings"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/errdefs"
)

// writeProtocolError answers err in the shape of the protocol r speaks:
// ECS JSON 1.1 when it carries X-Amz-Target, the agent and bridge
// protocols' {"kind","message"} under /agent/ and /vessel/, EKS REST
// otherwise.
func (s *Server) writeProtocolError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case r.Header.Get("X-Amz-Target") != "":
		s.writeECSError(w, r, err)
	case strings.HasPrefix(r.URL.Path, "/agent/") || strings.HasPrefix(r.URL.Path, "/vessel/"):
		writeAgent(w, nil, err)
	default:
		s.writeEKSError(w, r, err, api.EKSError{})
	}
}

// noRoute answers a request that matches no route (an unknown path, or a
// method its path does not take), which the router would answer in plain
// text.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Amz-Target") != "" {
		s.writeProtocolError(w, r, &apiError{code: "UnknownOperationException", kind: errdefs.ErrInvalidArgument,
			msg: "ECS operations are POST / with X-Amz-Target; got " + r.Method + " " + quoteOrEmpty(r.URL.Path)})
		return
	}
	s.writeProtocolError(w, r, errdefs.NotFound("no operation is %s %s: the EKS API serves GET /clusters, GET /clusters/NAME and "+
		"POST, GET or DELETE /clusters/NAME/fargate-profiles[/PROFILE]", r.Method, quoteOrEmpty(r.URL.Path)))
}

// cleanPaths refuses a path with empty, "." or ".." segments (an empty
// cluster or profile name makes "//"), which the router would answer with a
// redirect to another operation's path.
func (s *Server) cleanPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		clean := path.Clean("/" + p)
		if strings.HasSuffix(p, "/") && clean != "/" {
			clean += "/"
		}
		if p != clean {
			s.writeProtocolError(w, r, errdefs.InvalidArgument("path %q has an empty, \".\" or \"..\" segment: "+
				"names in the path (cluster, Fargate profile, host, task) must not be empty", p))
			return
		}
		next.ServeHTTP(w, r)
	})
}

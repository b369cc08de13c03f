package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/cwlogs"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/secrets"
)

// protocol is the wire shape a route answers errors in.
type protocol int

const (
	protoECS    protocol = iota // JSON 1.1: __type, HTTP 400
	protoEKS                    // REST: X-Amzn-ErrorType, HTTP 403
	protoVessel                 // agentproto's {"kind", "message"}, HTTP 403
)

// routeAction is the action a signed route performs.
type routeAction struct {
	action string // "" for JSON 1.1: "ecs:", "secretsmanager:", "ssm:" or "logs:" + the X-Amz-Target operation
	proto  protocol
}

// routeActions maps every signed route, by its ServeMux pattern, to the
// action a key's policy must allow (auth.Key.Allows). It is the one place
// where requests become actions; a signed route missing here is refused
// to every key but an admin key (TestEveryRouteHasAnAction).
var routeActions = map[string]routeAction{
	"POST /{$}": {"", protoECS},

	"GET /clusters":                                      {"eks:ListClusters", protoEKS},
	"GET /clusters/{name}":                               {"eks:DescribeCluster", protoEKS},
	"POST /clusters/{name}/fargate-profiles":             {"eks:CreateFargateProfile", protoEKS},
	"GET /clusters/{name}/fargate-profiles":              {"eks:ListFargateProfiles", protoEKS},
	"GET /clusters/{name}/fargate-profiles/{profile}":    {"eks:DescribeFargateProfile", protoEKS},
	"DELETE /clusters/{name}/fargate-profiles/{profile}": {"eks:DeleteFargateProfile", protoEKS},

	"GET /vessel/v1/clusters/{cluster}/tasks/{id}/logs":         {"vessel:GetTaskLogs", protoVessel},
	"POST /vessel/v1/clusters/{cluster}/tasks/{id}/exec":        {"ecs:ExecuteCommand", protoVessel},
	"POST /vessel/v1/clusters/{cluster}/tasks/{id}/portforward": {"vessel:ForwardTaskPort", protoVessel},

	"GET /vessel/v1/clusters/{cluster}/fargate-profiles": {"vessel:ListFargateProfiles", protoVessel},
	"POST /vessel/v1/tasks":                              {"vessel:SubmitTask", protoVessel},
	"POST /vessel/v1/clusters/{cluster}/tasks/{id}/stop": {"vessel:StopTask", protoVessel},
	"GET /vessel/v1/tasks":                               {"vessel:WatchTasks", protoVessel},

	"POST /vessel/v1/credentials":              {"vessel:CreateCredential", protoVessel},
	"GET /vessel/v1/credentials":               {"vessel:ListCredentials", protoVessel},
	"POST /vessel/v1/credentials/{key}/rotate": {"vessel:RotateCredential", protoVessel},
	"DELETE /vessel/v1/credentials/{key}":      {"vessel:DeleteCredential", protoVessel},

	"POST /vessel/v1/join-tokens":        {"vessel:CreateJoinToken", protoVessel},
	"GET /vessel/v1/join-tokens":         {"vessel:ListJoinTokens", protoVessel},
	"DELETE /vessel/v1/join-tokens/{id}": {"vessel:DeleteJoinToken", protoVessel},
	"GET /vessel/v1/hosts":               {"vessel:ListHosts", protoVessel},
	"POST /vessel/v1/hosts/{id}/revoke":  {"vessel:RevokeHost", protoVessel},
	"GET /vessel/v1/hosts/{id}":          {"vessel:DescribeHost", protoVessel},
	"POST /vessel/v1/hosts/{id}/drain":   {"vessel:DrainHost", protoVessel},
	"POST /vessel/v1/hosts/{id}/undrain": {"vessel:UndrainHost", protoVessel},
	"DELETE /vessel/v1/hosts/{id}":       {"vessel:RemoveHost", protoVessel},

	"POST /agent/v1/hosts":                 {"vessel-agent:RegisterHost", protoVessel},
	"POST /agent/v1/hosts/{id}/heartbeat":  {"vessel-agent:Heartbeat", protoVessel},
	"POST /agent/v1/hosts/{id}/warm-pools": {"vessel-agent:ReportWarmPools", protoVessel},
	"GET /agent/v1/hosts/{id}/assignments": {"vessel-agent:GetAssignments", protoVessel},
	"GET /agent/v1/hosts/{id}/network":     {"vessel-agent:GetHostNetwork", protoVessel},
	"POST /agent/v1/hosts/{id}/status":     {"vessel-agent:ReportStatus", protoVessel},
	"POST /agent/v1/hosts/{id}/statuses":   {"vessel-agent:ReportStatus", protoVessel},
	"GET /agent/v1/hosts/{id}/names":       {"vessel-agent:GetNames", protoVessel},

	// The secrets of a task, for the host it is placed on (secrets.go).
	"GET /agent/v1/hosts/{id}/tasks/{task}/secrets": {"vessel-agent:GetTaskSecrets", protoVessel},
	// The awslogs events of a task's containers, from the host it is
	// placed on (cwlogs.go).
	"POST /agent/v1/hosts/{id}/tasks/{task}/log-streams": {"vessel-agent:CreateTaskLogStreams", protoVessel},
	"POST /agent/v1/hosts/{id}/tasks/{task}/log-events":  {"vessel-agent:PutTaskLogEvents", protoVessel},
}

// knownActions lists every action a request can map to, for checking the
// actions of a custom policy.
func (s *Server) knownActions() []string {
	var out []string
	for op := range s.ecsOps() {
		out = append(out, "ecs:"+op)
	}
	out = append(out, secrets.Actions()...)
	out = append(out, cwlogs.Actions()...)
	for _, ra := range routeActions {
		if ra.action != "" {
			out = append(out, ra.action)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// authorize passes a verified request to mux only if its key's policy
// allows the request's action; otherwise it answers AccessDeniedException
// in the route's protocol, as AWS words it.
func (s *Server) authorize(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pattern := mux.Handler(r)
		if pattern == "" || pattern == "/" {
			mux.ServeHTTP(w, r) // no route (noRoute) or 405: nothing is performed
			return
		}
		id, _ := auth.IdentityFrom(r.Context())
		ra, known := routeActions[pattern]
		action := ra.action
		if ra.proto == protoECS && known {
			target := r.Header.Get("X-Amz-Target")
			op, ok := strings.CutPrefix(target, api.ECSTargetPrefix)
			if a, isSecrets := secrets.Action(target); isSecrets {
				op, ok = a, true
			} else if a, isLogs := cwlogs.Action(target); isLogs {
				op, ok = a, true
			} else if ok {
				op = "ecs:" + op
			}
			if !ok || op == "" || strings.HasSuffix(op, ":") {
				mux.ServeHTTP(w, r) // not an ECS operation: refused by the handler
				return
			}
			action = op
		}
		if !known {
			s.log.Error("a signed route has no action in routeActions: only admin keys may call it", "route", pattern)
			action = "vessel:" + pattern
		}
		if id.Allows(action) {
			mux.ServeHTTP(w, r)
			return
		}
		s.deny(w, r, id, action, ra.proto)
	})
}

// deny answers AccessDeniedException with AWS's message.
func (s *Server) deny(w http.ResponseWriter, r *http.Request, id auth.Identity, action string, proto protocol) {
	user := id.Key.Name
	if user == "" {
		user = id.AccessKeyID
	}
	msg := "User: arn:aws:iam::" + s.cfg.AccountID + ":user/" + user + " is not authorized to perform: " + action +
		" on resource: " + s.resourceOf(r, action) + " because no identity-based policy allows the " + action + " action"
	s.metrics.authFailures.WithLabelValues(api.ECSAccessDeniedException).Inc()
	s.log.Info("request denied by the key's policy", "access_key_id", id.AccessKeyID, "key", user, "policy", id.Key.Policy, "action", action)
	s.metrics.setOperation(r, action)
	err := &apiError{code: api.ECSAccessDeniedException, msg: msg, kind: errdefs.ErrPermissionDenied}
	switch proto {
	case protoECS:
		s.writeECSError(w, r, err)
	case protoEKS:
		s.writeEKSError(w, r, err, api.EKSError{})
	default:
		w.Header().Set("X-Amzn-ErrorType", api.ECSAccessDeniedException)
		agentproto.WriteError(w, errdefs.PermissionDenied("%s", msg))
	}
}

// resourceOf names what a request acts on, for the denial's message: an
// ARN where the request says it cheaply, else "*".
func (s *Server) resourceOf(r *http.Request, action string) string {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case strings.HasPrefix(action, "ecs:") && r.URL.Path == "/":
		return s.ecsResourceOf(r, strings.TrimPrefix(action, "ecs:"))
	case strings.HasPrefix(action, "eks:") && len(parts) >= 2 && parts[0] == "clusters":
		return "arn:aws:eks:" + s.cfg.Region + ":" + s.cfg.AccountID + ":cluster/" + parts[1]
	case len(parts) >= 6 && parts[0] == "vessel" && parts[2] == "clusters" && parts[4] == "tasks":
		return s.arn("ecs", "task/"+parts[3]+"/"+parts[5])
	}
	return "*"
}

// ecsResourceOf reads the cluster or task definition an ECS request names.
func (s *Server) ecsResourceOf(r *http.Request, op string) string {
	body, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return "*"
	}
	var in struct {
		Cluster        string `json:"cluster"`
		ClusterName    string `json:"clusterName"`
		TaskDefinition string `json:"taskDefinition"`
		Family         string `json:"family"`
	}
	json.Unmarshal(body, &in)
	arnOr := func(name, resource string) string {
		if strings.HasPrefix(name, "arn:") {
			return name
		}
		return s.arn("ecs", resource+"/"+name)
	}
	switch {
	case in.TaskDefinition != "":
		return arnOr(in.TaskDefinition, "task-definition")
	case in.Family != "":
		return arnOr(in.Family, "task-definition")
	case in.Cluster != "":
		return arnOr(in.Cluster, "cluster")
	case in.ClusterName != "":
		return arnOr(in.ClusterName, "cluster")
	case strings.HasPrefix(op, "List") && op != "ListClusters" && !strings.HasPrefix(op, "ListTaskDefinition"),
		op == "RunTask", op == "DescribeTasks", op == "StopTask", strings.HasSuffix(op, "Service"), op == "DescribeServices":
		return s.arn("ecs", "cluster/"+DefaultCluster)
	}
	return "*"
}

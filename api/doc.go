// Package api holds the wire shapes of the public API Vessel serves: the
// request and response bodies of the AWS ECS operations (JSON 1.1 protocol)
// and the EKS Fargate-profile and cluster operations (REST-JSON protocol), so
// that the aws CLI and aws-sdk-go-v2's ECS and EKS clients work against
// Vessel unchanged.
//
// It owns field names, JSON names, optionality (pointers with omitempty where
// the SDK distinguishes absent from zero), the epoch-seconds Timestamp
// encoding, the error body shapes and the enum and exception-name constants.
// The source of truth is the botocore service models shipped with the aws CLI
// (ecs/2014-11-13, eks/2017-11-01); the names here match their member names.
//
// It has no behaviour beyond JSON encoding: no validation, no defaults, no
// HTTP handling. It must import nothing of Vessel's (only the standard
// library), so that any layer, and client code, can use it.
//
// Usage sketch, in an HTTP handler for X-Amz-Target
// AmazonEC2ContainerServiceV20141113.RunTask:
//
//	var in api.RunTaskInput
//	if err := json.NewDecoder(r.Body).Decode(&in); err != nil { ... }
//	out := api.RunTaskOutput{Tasks: []api.Task{{
//		TaskArn:    &arn,
//		LastStatus: &provisioning, // api.TaskStatusProvisioning
//		CreatedAt:  api.NewTimestamp(time.Now()),
//	}}}
//	w.Header().Set("Content-Type", api.ECSContentType)
//	json.NewEncoder(w).Encode(out)
package api

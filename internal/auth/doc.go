// Package auth owns Vessel's access keys and the verification of AWS
// Signature Version 4 requests, so that the aws CLI and the AWS SDKs can talk
// to Vessel's ECS and EKS endpoints with --endpoint-url.
//
// It owns two things:
//
//   - the credentials file, <dataDir>/credentials.json, a JSON list of
//     access keys written with mode 0600 (LoadOrCreate, ExportLines);
//   - the Verifier, which checks the Authorization header of an incoming
//     request by re-signing a copy of it with the AWS SDK's own SigV4 signer
//     (github.com/aws/aws-sdk-go-v2/aws/signer/v4) and comparing signatures,
//     rather than with a canonicalisation of its own.
//
// SignRequest signs Vessel's own agent-to-server calls with the same signer.
//
// Errors from Verify are *AuthError values that already carry the AWS error
// code and HTTP status; the API layer decides only how to shape them on the
// wire (ECS JSON or EKS REST), which is why Middleware takes a writeError
// function. Other errors wrap the kinds in internal/errdefs.
//
// This package must not import any other Vessel package except
// internal/errdefs: the API server, the agent and the CLI all depend on it.
//
// Usage:
//
//	keys, created, err := auth.LoadOrCreate(dataDir)
//	if created {
//		fmt.Print(auth.ExportLines(keys[0], "http://127.0.0.1:8080", "us-east-1"))
//	}
//	v, err := auth.NewVerifier(auth.VerifierConfig{Keys: keys})
//	handler = v.Middleware(handler, writeECSError)
//	// ... in a handler:
//	id, ok := auth.IdentityFrom(r.Context())
package auth

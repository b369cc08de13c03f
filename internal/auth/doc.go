// Package auth owns Vessel's access keys and the verification of AWS
// Signature Version 4 requests, so that the aws CLI and the AWS SDKs can talk
// to Vessel's ECS and EKS endpoints with --endpoint-url.
//
// It owns:
//
//   - keys and their policies (Key, Key.Allows, the Keyring interface the
//     verifier looks keys up in; the control plane's Keyring lives in
//     internal/keyring);
//   - sealing secrets at rest (Sealer: AES-256-GCM under a 32-byte master
//     key file, mode 0600) and the local admin key of the control plane's
//     machine, <dataDir>/admin-key.json, its secret sealed (Local); the
//     plaintext credentials.json of earlier versions is read until the
//     server migrates it;
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
//	k, err := auth.Local{DataDir: dataDir}.Load() // the CLI's key
//	fmt.Print(auth.ExportLines(k, "http://127.0.0.1:8080", "us-east-1"))
//	v, err := auth.NewVerifier(auth.VerifierConfig{Keyring: ring})
//	handler = v.Middleware(handler, writeECSError)
//	// ... in a handler:
//	id, ok := auth.IdentityFrom(r.Context())
package auth

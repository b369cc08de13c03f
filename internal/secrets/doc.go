// Package secrets is the control plane's secrets store and its two APIs:
// wire-compatible subsets of Secrets Manager (X-Amz-Target
// secretsmanager.<Op>) and of SSM Parameter Store (AmazonSSM.<Op>), both
// JSON 1.1, and the resolution of a container definition's `secrets`
// (valueFrom a secret's ARN with ECS's :json-key:version-stage:version-id
// suffixes, or a parameter's name or ARN) for the host agent.
//
// Values are sealed at rest with AES-256-GCM (auth.Sealer) under a key kept
// apart from the store (<data dir>/secrets.key, mode 0600, or
// --secrets-key-file), each bound (as GCM's additional data) to the
// secret's ARN and version or the parameter's name and version, so that a
// sealed value moved to another record does not open. The store's bytes
// never hold a value in clear; only an API call (GetSecretValue,
// GetParameter(s) WithDecryption, GetParametersByPath) or Resolve returns
// one, and nothing here logs one.
//
// Records live under Prefix (secrets) and ParameterPrefix (parameters) of
// the shared store, so control plane replicas with the same key share them;
// read-modify-write updates are guarded by the store's revisions.
//
// It imports auth, errdefs and store only (and no part of the server):
// internal/server makes the Service from Config.SecretsSealer, routes the
// two APIs' targets to it after authorising each operation as an action
// of its own (Action), and answers a host agent's request for the secrets
// of a task placed on that host with Resolve.
//
// Usage:
//
//	sealer, _, err := auth.LoadMasterKey(filepath.Join(dataDir, secrets.KeyFile), true)
//	sec, err := secrets.New(secrets.Config{Store: st, Sealer: sealer, Region: "us-east-1", AccountID: acct})
//	http.Handle("/", sec) // POST / with X-Amz-Target secretsmanager.* or AmazonSSM.*
//	value, err := sec.Resolve(ctx, "arn:aws:secretsmanager:...:secret:db-AbCdEf:password::")
package secrets

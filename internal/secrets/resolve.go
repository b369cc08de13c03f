package secrets

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"vessel.dev/vessel/internal/errdefs"
)

// Resolve returns the value a container definition's secret names by
// valueFrom, as ECS reads it:
//
//   - a Secrets Manager ARN (full or without its random suffix), optionally
//     followed by :json-key:version-stage:version-id (each may be empty):
//     the secret's SecretString at that version (AWSCURRENT by default),
//     or the value of json-key in it when it is a JSON object;
//   - an SSM parameter's ARN or name: its latest value, decrypted.
//
// A missing secret, key or version is an error of kind errdefs.ErrNotFound;
// every error names valueFrom's secret and never holds a value.
func (s *Service) Resolve(ctx context.Context, valueFrom string) (string, error) {
	if rest, ok := strings.CutPrefix(valueFrom, "arn:aws:secretsmanager:"); ok {
		return s.resolveSecret(ctx, valueFrom, rest)
	}
	p, err := s.getParameter(ctx, valueFrom, true)
	if err != nil {
		return "", fmt.Errorf("unable to retrieve secrets from ssm: %s: %w", codeOr(err, CodeParameterNotFound), err)
	}
	return p.Value, nil
}

func codeOr(err error, def string) string {
	if c := Code(err); c != "" {
		return c
	}
	return def
}

func (s *Service) resolveSecret(ctx context.Context, valueFrom, rest string) (string, error) {
	// REGION:ACCOUNT:secret:NAME[-XXXXXX][:json-key[:version-stage[:version-id]]]
	f := strings.Split(rest, ":")
	if len(f) < 4 || len(f) > 7 || f[2] != "secret" || f[3] == "" {
		return "", errdefs.InvalidArgument("valueFrom %s is not a Secrets Manager secret's ARN: expected arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME[:json-key:version-stage:version-id]", valueFrom)
	}
	f = append(f, "", "", "")
	secretARN := "arn:aws:secretsmanager:" + strings.Join(f[:4], ":")
	jsonKey, stage, version := f[4], f[5], f[6]
	in := &GetSecretValueInput{SecretId: &secretARN}
	if stage != "" {
		in.VersionStage = &stage
	}
	if version != "" {
		in.VersionId = &version
	}
	out, err := s.GetSecretValue(ctx, in)
	if err != nil {
		return "", fmt.Errorf("unable to retrieve secret from asm: %s: %w", codeOr(err, CodeResourceNotFound), err)
	}
	if out.SecretString == nil {
		return "", errdefs.InvalidArgument("secret %s holds a SecretBinary; a container's secret takes a SecretString", secretARN)
	}
	if jsonKey == "" {
		return *out.SecretString, nil
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(*out.SecretString), &obj); err != nil {
		// The parser's message may quote the value: say only what is wrong.
		return "", errdefs.InvalidArgument("the value of secret %s is not a JSON object, so json-key %s cannot be read from it", secretARN, jsonKey)
	}
	v, ok := obj[jsonKey]
	if !ok {
		return "", errdefs.NotFound("retrieved secret from Secrets Manager did not contain json key %s (secret %s)", jsonKey, secretARN)
	}
	if str, ok := v.(string); ok {
		return str, nil
	}
	data, err := json.Marshal(v)
	return string(data), err
}

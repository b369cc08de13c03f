package agentproto

import (
	"context"
	"net/http"
	"net/url"

	"vessel.dev/vessel/internal/task"
)

// TaskSecrets are the values of a task's containers' secrets (ECS
// secrets), which the control plane reads from its secrets store for the
// host the task is placed on.
type TaskSecrets struct {
	// Env holds, by container name, the environment variables its secrets
	// give, by variable name.
	Env map[string]map[string]string `json:"env,omitempty"`
	// RegistryAuth holds, by container name, the credentials to pull its
	// image read from its repositoryCredentials secret.
	RegistryAuth map[string]task.RegistryAuth `json:"registryAuth,omitempty"`
	// Failure, when set, says which secret could not be read and why
	// (naming the secret, never a value): the task cannot start.
	Failure string `json:"failure,omitempty"`
}

// SecretSource is what an agent asks for the secrets of the tasks placed
// on its host.
type SecretSource interface {
	// TaskSecrets resolves the secrets of task taskID. It does not block
	// beyond the store's reads. A task that is not placed on host hostID,
	// or is stopped, is an error of kind errdefs.ErrNotFound; a secret
	// that cannot be read is no error but TaskSecrets.Failure. The caller
	// owns the result, hands it to the task's containers only and never
	// logs it.
	TaskSecrets(ctx context.Context, hostID, taskID string) (TaskSecrets, error)
}

var _ SecretSource = (*Client)(nil)

// TaskSecretsPath is the agent protocol's route of TaskSecrets.
func TaskSecretsPath(hostID, taskID string) string {
	return "/agent/v1/hosts/" + url.PathEscape(hostID) + "/tasks/" + url.PathEscape(taskID) + "/secrets"
}

// TaskSecrets implements SecretSource.
func (c *Client) TaskSecrets(ctx context.Context, hostID, taskID string) (TaskSecrets, error) {
	var out TaskSecrets
	err := c.do(ctx, http.MethodGet, TaskSecretsPath(hostID, taskID), nil, &out)
	return out, err
}

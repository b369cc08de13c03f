package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/task"
)

// taskSecrets fetches the values of the task's containers' secrets and
// their repositoryCredentials from the control plane
// (agentproto.SecretSource), for the containers' environment and image
// pulls only: they are never logged,
// reported or written anywhere but the sandbox's own configuration. A
// secret that cannot be read is the task's ResourceInitializationError,
// which names the secret.
func (w *worker) taskSecrets(ctx context.Context) (agentproto.TaskSecrets, error) {
	if !slices.ContainsFunc(w.task.Containers, func(c task.Container) bool { return len(c.Secrets) > 0 || c.RegistryCredentialsFrom != "" }) {
		return agentproto.TaskSecrets{}, nil
	}
	fail := func(err error) error {
		return fmt.Errorf("%s: unable to pull secrets or registry auth: %v", task.ReasonResourceInitialization, err)
	}
	src, ok := w.agent.cfg.ControlPlane.(agentproto.SecretSource)
	if !ok {
		return agentproto.TaskSecrets{}, fail(errors.New("this host's connection to the control plane cannot fetch secrets"))
	}
	out, err := src.TaskSecrets(ctx, w.agent.cfg.Host.ID, w.task.ID)
	if err == nil && out.Failure != "" {
		err = errors.New(out.Failure)
	}
	if err != nil {
		return agentproto.TaskSecrets{}, fail(err)
	}
	return out, nil
}

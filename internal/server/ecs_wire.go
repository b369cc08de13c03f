package server

import (
	"encoding/json"

	"vessel.dev/vessel/api"
)

// ECS answers some lists even when they are empty ("volumes": [],
// "mountPoints": [], "tags": [] ...), as the example answers shipped with
// the aws CLI show; the api types encode those members always, and these
// helpers make sure they hold [] rather than nil (which would be null).
// internal/server/wiretest checks both.

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// taskDefOut is a stored task definition as ECS answers it. It copies what
// it fills, so the stored record is not changed.
func taskDefOut(d api.TaskDefinition) *api.TaskDefinition {
	d.Volumes = orEmpty(d.Volumes)
	d.PlacementConstraints = orEmpty(d.PlacementConstraints)
	cds := make([]api.ContainerDefinition, len(d.ContainerDefinitions))
	for i, cd := range d.ContainerDefinitions {
		cd.MountPoints = orEmpty(cd.MountPoints)
		cd.VolumesFrom = orEmpty(cd.VolumesFrom)
		cds[i] = cd
	}
	d.ContainerDefinitions = cds
	return &d
}

// overridesOut is a task's overrides as ECS answers them.
func overridesOut(stored json.RawMessage) *api.TaskOverride {
	ov := api.TaskOverride{}
	if len(stored) > 0 {
		if json.Unmarshal(stored, &ov) != nil {
			ov = api.TaskOverride{}
		}
	}
	ov.ContainerOverrides = orEmpty(ov.ContainerOverrides)
	ov.InferenceAcceleratorOverrides = orEmpty(ov.InferenceAcceleratorOverrides)
	return &ov
}

package podtask

import (
	"encoding/base64"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"vessel.dev/vessel/internal/task"
)

// TestConvertImagePullSecrets: a pod's imagePullSecrets become each
// container's RegistryAuth, for the registry the image is on, as the
// kubelet's keyring matches them.
func TestConvertImagePullSecrets(t *testing.T) {
	basic := base64.StdEncoding.EncodeToString([]byte("carol:from-auth"))
	in := baseInputs()
	in.Secrets["regcred"] = map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths": {
		"https://registry.example.com:5000": {"username": "alice", "password": "s3cret"},
		"registry.example.com:5000/team-b": {"username": "bob", "password": "pw-b"},
		"https://index.docker.io/v1/": {"auth": "` + basic + `"},
		"*.wild.example": {"username": "dave", "password": "w"}}}`)}
	in.Secrets["oldcfg"] = map[string][]byte{corev1.DockerConfigKey: []byte(`{"legacy.example": {"username": "erin", "password": "l"}}`)}
	in.Secrets["broken"] = map[string][]byte{corev1.DockerConfigJsonKey: []byte(`not json`)}
	pod := basePod()
	pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "missing"}, {Name: "broken"}, {Name: "regcred"}, {Name: "oldcfg"}}
	want := map[string]*task.RegistryAuth{
		"registry.example.com:5000/team-a/app:v1":  {Username: "alice", Password: "s3cret"},
		"registry.example.com:5000/team-b/app:v1":  {Username: "bob", Password: "pw-b"},
		"registry.example.com/team-a/app:v1":       nil, // another port: another registry
		"nginx:1.27":                               {Username: "carol", Password: "from-auth"},
		"docker.io/library/nginx:1.27":             {Username: "carol", Password: "from-auth"},
		"eu.wild.example/app":                      {Username: "dave", Password: "w"},
		"a.b.wild.example/app":                     nil, // a wildcard matches one label
		"legacy.example/app@sha256:" + sixtyFour(): {Username: "erin", Password: "l"},
		"other.example/app:v1":                     nil,
	}
	pod.Spec.Containers = nil
	names := map[string]string{}
	for img := range want {
		n := "c" + string(rune('a'+len(names)))
		names[n] = img
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: n, Image: img})
	}
	tk, err := Convert(pod, in)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range tk.Containers {
		w := want[names[c.Name]]
		if (w == nil) != (c.RegistryAuth == nil) || w != nil && *w != *c.RegistryAuth {
			t.Errorf("image %s: RegistryAuth %+v, want %+v", c.Image, c.RegistryAuth, w)
		}
	}
}

func sixtyFour() string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = 'a'
	}
	return string(b)
}

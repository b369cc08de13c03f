package podtask

import (
	"encoding/base64"
	"encoding/json"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"vessel.dev/vessel/internal/task"
)

// dockerAuth is one registry's entry of a dockerconfigjson or dockercfg
// secret.
type dockerAuth struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Auth     string `json:"auth"` // base64 of "username:password"
}

// registryAuth returns the credentials of the pod's imagePullSecrets for
// image, as the kubelet's keyring matches them: an entry's registry host
// (with port; "*" globs one label) must be the image's, and its path, if
// any, a prefix of the image's repository; the most specific entry wins,
// the first secret on a tie. Secrets that are missing, of another type or
// malformed are skipped, as the kubelet does; nil means pull anonymously.
func (r *resolver) registryAuth(image string) *task.RegistryAuth {
	host, repo := imageRegistry(image)
	best := -1
	var out *task.RegistryAuth
	for _, ref := range r.pod.Spec.ImagePullSecrets {
		entries := dockerAuths(r.in.Secrets[ref.Name])
		keys := make([]string, 0, len(entries))
		for k := range entries {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			khost, kpath := splitKey(k)
			if !hostMatches(khost, host) || kpath != "" && repo != kpath && !strings.HasPrefix(repo, kpath+"/") {
				continue
			}
			score := 2 * len(kpath)
			if !strings.Contains(khost, "*") {
				score++
			}
			a := entries[k]
			user, pass := a.Username, a.Password
			if user == "" && pass == "" && a.Auth != "" {
				b, err := base64.StdEncoding.DecodeString(a.Auth)
				if err != nil {
					continue
				}
				user, pass, _ = strings.Cut(string(b), ":")
			}
			if (user != "" || pass != "") && score > best {
				best, out = score, &task.RegistryAuth{Username: user, Password: pass}
			}
		}
	}
	return out
}

// dockerAuths reads a kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg
// secret's data; nil if it is neither.
func dockerAuths(data map[string][]byte) map[string]dockerAuth {
	if b, ok := data[corev1.DockerConfigJsonKey]; ok {
		var cfg struct {
			Auths map[string]dockerAuth `json:"auths"`
		}
		if json.Unmarshal(b, &cfg) == nil {
			return cfg.Auths
		}
		return nil
	}
	if b, ok := data[corev1.DockerConfigKey]; ok {
		var cfg map[string]dockerAuth
		if json.Unmarshal(b, &cfg) == nil {
			return cfg
		}
	}
	return nil
}

// imageRegistry splits an image reference into its registry host and
// repository path, with Docker's defaults (docker.io, library/).
func imageRegistry(image string) (host, repo string) {
	name, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i] // the tag
	}
	first, rest, ok := strings.Cut(name, "/")
	if !ok || !strings.ContainsAny(first, ".:") && first != "localhost" {
		first, rest = "docker.io", name
	}
	host = dockerHub(first)
	if host == "docker.io" && !strings.Contains(rest, "/") {
		rest = "library/" + rest
	}
	return host, rest
}

// splitKey splits a credential entry's key ("https://host:port/path/",
// "host", "*.host") into host and path.
func splitKey(k string) (host, p string) {
	k = strings.TrimPrefix(strings.TrimPrefix(k, "https://"), "http://")
	host, p, _ = strings.Cut(strings.TrimRight(k, "/"), "/")
	host = dockerHub(host)
	if host == "docker.io" && (p == "v1" || p == "v2") {
		p = ""
	}
	return host, p
}

func dockerHub(host string) string {
	switch host {
	case "index.docker.io", "registry-1.docker.io", "docker.io":
		return "docker.io"
	}
	return host
}

// hostMatches compares hosts label by label, a key's label being a glob
// ("*.example.com"); ports must be equal.
func hostMatches(key, host string) bool {
	kname, kport, _ := strings.Cut(key, ":")
	hname, hport, _ := strings.Cut(host, ":")
	kl, hl := strings.Split(kname, "."), strings.Split(hname, ".")
	if kport != hport || len(kl) != len(hl) {
		return false
	}
	for i := range kl {
		if ok, err := path.Match(kl[i], hl[i]); err != nil || !ok {
			return false
		}
	}
	return true
}

package podtask

import (
	"math"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"vessel.dev/vessel/internal/errdefs"
)

// env returns a container's environment, resolved as the kubelet does.
func (r *resolver) env(c *corev1.Container) (map[string]string, error) {
	env := map[string]string{}
	if h := r.in.KubernetesServiceHost; h != "" {
		p := strconv.Itoa(int(r.in.KubernetesServicePort))
		url := "tcp://" + hostPort(h, p)
		prefix := "KUBERNETES_PORT_" + p + "_TCP"
		env["KUBERNETES_SERVICE_HOST"] = h
		env["KUBERNETES_SERVICE_PORT"] = p
		env["KUBERNETES_SERVICE_PORT_HTTPS"] = p
		env["KUBERNETES_PORT"] = url
		env[prefix] = url
		env[prefix+"_PROTO"] = "tcp"
		env[prefix+"_PORT"] = p
		env[prefix+"_ADDR"] = h
	}

	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			data, ok := r.in.ConfigMaps[from.ConfigMapRef.Name]
			if !ok {
				if isTrue(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, errdefs.NotFound("container %q: envFrom: configmap %q not found; create it or mark it optional",
					c.Name, from.ConfigMapRef.Name)
			}
			for k, v := range data {
				setFrom(env, from.Prefix+k, v)
			}
		case from.SecretRef != nil:
			data, ok := r.in.Secrets[from.SecretRef.Name]
			if !ok {
				if isTrue(from.SecretRef.Optional) {
					continue
				}
				return nil, errdefs.NotFound("container %q: envFrom: secret %q not found; create it or mark it optional",
					c.Name, from.SecretRef.Name)
			}
			for k, v := range data {
				setFrom(env, from.Prefix+k, string(v))
			}
		}
	}

	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = expand(e.Value, env)
			continue
		}
		v, ok, err := r.valueFrom(c, e)
		if err != nil {
			return nil, err
		}
		if ok {
			env[e.Name] = v
		}
	}
	return env, nil
}

// setFrom sets an envFrom variable, skipping names the kubelet would refuse
// (empty, or holding "=").
func setFrom(env map[string]string, name, value string) {
	if name == "" || strings.Contains(name, "=") {
		return
	}
	env[name] = value
}

func hostPort(h, p string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]:" + p
	}
	return h + ":" + p
}

// valueFrom resolves one env entry's valueFrom; ok is false for an optional
// reference that is missing, which leaves the variable unset.
func (r *resolver) valueFrom(c *corev1.Container, e corev1.EnvVar) (v string, ok bool, err error) {
	vf := e.ValueFrom
	switch {
	case vf.ConfigMapKeyRef != nil:
		ref := vf.ConfigMapKeyRef
		data, found := r.in.ConfigMaps[ref.Name]
		if !found {
			if isTrue(ref.Optional) {
				return "", false, nil
			}
			return "", false, errdefs.NotFound("container %q: env %q: configmap %q not found; create it or mark the reference optional",
				c.Name, e.Name, ref.Name)
		}
		v, found = data[ref.Key]
		if !found {
			if isTrue(ref.Optional) {
				return "", false, nil
			}
			return "", false, errdefs.NotFound("container %q: env %q: key %q not found in configmap %q; add it or mark the reference optional",
				c.Name, e.Name, ref.Key, ref.Name)
		}
		return v, true, nil
	case vf.SecretKeyRef != nil:
		ref := vf.SecretKeyRef
		data, found := r.in.Secrets[ref.Name]
		if !found {
			if isTrue(ref.Optional) {
				return "", false, nil
			}
			return "", false, errdefs.NotFound("container %q: env %q: secret %q not found; create it or mark the reference optional",
				c.Name, e.Name, ref.Name)
		}
		b, found := data[ref.Key]
		if !found {
			if isTrue(ref.Optional) {
				return "", false, nil
			}
			return "", false, errdefs.NotFound("container %q: env %q: key %q not found in secret %q; add it or mark the reference optional",
				c.Name, e.Name, ref.Key, ref.Name)
		}
		return string(b), true, nil
	case vf.FieldRef != nil:
		v, err := r.field(vf.FieldRef.FieldPath)
		if err != nil {
			return "", false, errdefs.InvalidArgument("container %q: env %q: %v", c.Name, e.Name, err)
		}
		return v, true, nil
	case vf.ResourceFieldRef != nil:
		v, err := r.resource(c, vf.ResourceFieldRef)
		if err != nil {
			return "", false, errdefs.InvalidArgument("container %q: env %q: %v", c.Name, e.Name, err)
		}
		return v, true, nil
	default:
		return "", false, errdefs.InvalidArgument(
			"container %q: env %q: valueFrom names no source; use configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef",
			c.Name, e.Name)
	}
}

// field resolves a downward API field path.
func (r *resolver) field(path string) (string, error) {
	p := r.pod
	if key, ok := subscript(path, "metadata.labels"); ok {
		return p.Labels[key], nil
	}
	if key, ok := subscript(path, "metadata.annotations"); ok {
		return p.Annotations[key], nil
	}
	switch path {
	case "metadata.name":
		return p.Name, nil
	case "metadata.namespace":
		return p.Namespace, nil
	case "metadata.uid":
		return string(p.UID), nil
	case "spec.nodeName":
		switch {
		case r.in.NodeName != "":
			return r.in.NodeName, nil
		case p.Spec.NodeName != "":
			return p.Spec.NodeName, nil
		}
		return PlaceholderNodeName, nil
	case "spec.serviceAccountName":
		return p.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs", "status.hostIP", "status.hostIPs":
		if r.in.PodIP != "" {
			return r.in.PodIP, nil
		}
		return PlaceholderPodIP, nil
	}
	return "", errdefs.InvalidArgument("unsupported fieldRef %q; supported: metadata.name, metadata.namespace, metadata.uid, "+
		"metadata.labels['<key>'], metadata.annotations['<key>'], spec.nodeName, spec.serviceAccountName, "+
		"status.podIP(s), status.hostIP(s)", path)
}

// subscript parses `prefix['key']`.
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"['")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "']")
}

// resource resolves a resourceFieldRef as the kubelet does: cpu rounded up
// to whole divisors of millicores, memory and storage to whole divisors of
// bytes; a limit the container does not set is the provisioned size.
func (r *resolver) resource(c *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	target := c
	if ref.ContainerName != "" && ref.ContainerName != c.Name {
		target = nil
		for _, list := range [][]corev1.Container{r.pod.Spec.Containers, r.pod.Spec.InitContainers} {
			for i := range list {
				if list[i].Name == ref.ContainerName {
					target = &list[i]
				}
			}
		}
		if target == nil {
			return "", errdefs.InvalidArgument("resourceFieldRef names container %q, which the pod does not have", ref.ContainerName)
		}
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewMilliQuantity(r.size.MilliCPU, resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(r.size.MemoryMiB<<20, resource.BinarySI),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(DefaultEphemeralStorageGiB<<30, resource.BinarySI),
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if _, known := capacity[corev1.ResourceName(name)]; !ok || !known || kind != "limits" && kind != "requests" {
		return "", errdefs.InvalidArgument("unsupported resourceFieldRef %q; supported: limits.cpu, limits.memory, "+
			"limits.ephemeral-storage, requests.cpu, requests.memory, requests.ephemeral-storage", ref.Resource)
	}
	rn := corev1.ResourceName(name)
	var q resource.Quantity
	if kind == "limits" {
		var set bool
		if q, set = target.Resources.Limits[rn]; !set {
			q = capacity[rn]
		}
	} else {
		q = target.Resources.Requests[rn]
	}
	div := ref.Divisor
	if div.IsZero() {
		div = resource.MustParse("1")
	}
	if rn == corev1.ResourceCPU {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(div.MilliValue()))), 10), nil
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(div.Value()))), 10), nil
}

// expandAll expands $(VAR) references in each of args; nil stays nil.
func expandAll(args []string, env map[string]string) []string {
	if args == nil {
		return nil
	}
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = expand(a, env)
	}
	return out
}

// expand replaces $(NAME) with env's NAME as the kubelet does: $$ is a
// literal $, and a reference to an unknown name, or an unclosed one, stays
// as written.
func expand(s string, env map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString("$(")
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := env[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

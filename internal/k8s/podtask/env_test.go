package podtask

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"vessel.dev/vessel/internal/errdefs"
)

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

func resEnv(name, res, divisor, container string) corev1.EnvVar {
	sel := &corev1.ResourceFieldSelector{Resource: res, ContainerName: container}
	if divisor != "" {
		sel.Divisor = resource.MustParse(divisor)
	}
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: sel}}
}

func cmKey(name, cm, key string, optional bool) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: cm}, Key: key, Optional: &optional}}}
}

func secKey(name, sec, key string, optional bool) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: sec}, Key: key, Optional: &optional}}}
}

func TestEnv(t *testing.T) {
	limited := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
	}
	tests := []struct {
		name    string
		env     []corev1.EnvVar
		envFrom []corev1.EnvFromSource
		in      func(*Inputs)
		res     corev1.ResourceRequirements
		want    map[string]string // entries that must be present
		absent  []string
		errKind func(error) bool
		errMsg  string
	}{
		{name: "plain value", env: []corev1.EnvVar{{Name: "A", Value: "x"}, {Name: "EMPTY"}},
			want: map[string]string{"A": "x", "EMPTY": ""}},
		{name: "later value wins and refers to earlier", env: []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "$(A)-$(A)"}, {Name: "A", Value: "2"}},
			want: map[string]string{"A": "2", "B": "1-1"}},
		{name: "reference to a later var is kept", env: []corev1.EnvVar{{Name: "B", Value: "$(A)"}, {Name: "A", Value: "1"}},
			want: map[string]string{"B": "$(A)"}},
		{name: "escaped and unclosed", env: []corev1.EnvVar{{Name: "A", Value: "v"}, {Name: "B", Value: "$$(A) $(A $x $"}},
			want: map[string]string{"B": "$(A) $(A $x $"}},
		{name: "configMapKeyRef", env: []corev1.EnvVar{cmKey("V", "cm", "k", false)}, want: map[string]string{"V": "cm-v"}},
		{name: "configMapKeyRef optional missing key", env: []corev1.EnvVar{cmKey("V", "cm", "nope", true)}, absent: []string{"V"}},
		{name: "configMapKeyRef optional missing map", env: []corev1.EnvVar{cmKey("V", "nope", "k", true)}, absent: []string{"V"}},
		{name: "configMapKeyRef missing key", env: []corev1.EnvVar{cmKey("V", "cm", "nope", false)},
			errKind: errdefs.IsNotFound, errMsg: `container "app": env "V": key "nope" not found in configmap "cm"`},
		{name: "configMapKeyRef missing map", env: []corev1.EnvVar{cmKey("V", "nope", "k", false)},
			errKind: errdefs.IsNotFound, errMsg: `env "V": configmap "nope" not found`},
		{name: "secretKeyRef", env: []corev1.EnvVar{secKey("PW", "sec", "pw", false)}, want: map[string]string{"PW": "s3cret"}},
		{name: "secretKeyRef values are not expanded", env: []corev1.EnvVar{{Name: "A", Value: "x"}, secKey("PW", "dollar", "v", false)},
			in: func(in *Inputs) { in.Secrets["dollar"] = map[string][]byte{"v": []byte("$(A)")} }, want: map[string]string{"PW": "$(A)"}},
		{name: "secretKeyRef optional missing", env: []corev1.EnvVar{secKey("PW", "sec", "nope", true)}, absent: []string{"PW"}},
		{name: "secretKeyRef missing key", env: []corev1.EnvVar{secKey("PW", "sec", "nope", false)},
			errKind: errdefs.IsNotFound, errMsg: `key "nope" not found in secret "sec"`},
		{name: "secretKeyRef missing secret", env: []corev1.EnvVar{secKey("PW", "nope", "pw", false)},
			errKind: errdefs.IsNotFound, errMsg: `secret "nope" not found`},
		{name: "envFrom with prefix, env wins", envFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}},
			{Prefix: "S_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}}},
		}, env: []corev1.EnvVar{{Name: "A", Value: "override"}},
			want: map[string]string{"A": "override", "k": "cm-v", "S_pw": "s3cret", "S_B": "2"}, absent: []string{"pw"}},
		{name: "envFrom skips names with =", envFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "odd"}}}},
			in:   func(in *Inputs) { in.ConfigMaps["odd"] = map[string]string{"a=b": "x", "ok": "y"} },
			want: map[string]string{"ok": "y"}, absent: []string{"a=b"}},
		{name: "envFrom optional missing", envFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Optional: ptr(true)}},
			{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Optional: ptr(true)}},
		}, want: map[string]string{}},
		{name: "envFrom missing configmap", envFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}}}},
			errKind: errdefs.IsNotFound, errMsg: `envFrom: configmap "nope" not found`},
		{name: "envFrom missing secret", envFrom: []corev1.EnvFromSource{
			{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}}}},
			errKind: errdefs.IsNotFound, errMsg: `envFrom: secret "nope" not found`},
		{name: "downward API fields", env: []corev1.EnvVar{
			fieldEnv("N", "metadata.name"), fieldEnv("NS", "metadata.namespace"), fieldEnv("UID", "metadata.uid"),
			fieldEnv("L", "metadata.labels['app']"), fieldEnv("AN", "metadata.annotations['team']"),
			fieldEnv("LM", "metadata.labels['missing']"), fieldEnv("SA", "spec.serviceAccountName"),
		}, want: map[string]string{"N": "web-1", "NS": "shop", "UID": "uid-123", "L": "web", "AN": "blue", "LM": "", "SA": "web-sa"}},
		{name: "pod IP placeholder", env: []corev1.EnvVar{fieldEnv("IP", "status.podIP"), fieldEnv("IPS", "status.podIPs"),
			fieldEnv("HIP", "status.hostIP"), fieldEnv("NODE", "spec.nodeName"), {Name: "URL", Value: "http://$(IP):80"}},
			want: map[string]string{"IP": PlaceholderPodIP, "IPS": PlaceholderPodIP, "HIP": PlaceholderPodIP,
				"NODE": PlaceholderNodeName, "URL": "http://" + PlaceholderPodIP + ":80"}},
		{name: "pod IP and node name known", env: []corev1.EnvVar{fieldEnv("IP", "status.podIP"), fieldEnv("HIP", "status.hostIPs"),
			fieldEnv("NODE", "spec.nodeName")},
			in:   func(in *Inputs) { in.PodIP, in.NodeName = "10.0.1.23", "vessel-ip-10-0-1-23" },
			want: map[string]string{"IP": "10.0.1.23", "HIP": "10.0.1.23", "NODE": "vessel-ip-10-0-1-23"}},
		{name: "unsupported field", env: []corev1.EnvVar{fieldEnv("X", "metadata.generateName")},
			errKind: errdefs.IsInvalidArgument, errMsg: `env "X": unsupported fieldRef "metadata.generateName"`},
		{name: "resource limits and requests", res: limited, env: []corev1.EnvVar{
			resEnv("LC", "limits.cpu", "", ""), resEnv("LCM", "limits.cpu", "1m", ""), resEnv("RC", "requests.cpu", "1m", ""),
			resEnv("LM", "limits.memory", "", ""), resEnv("LMI", "limits.memory", "1Mi", ""), resEnv("RM", "requests.memory", "1Mi", ""),
		}, want: map[string]string{"LC": "1", "LCM": "500", "RC": "250", "LM": "134217728", "LMI": "128", "RM": "64"}},
		{name: "unset limits are the provisioned size", env: []corev1.EnvVar{
			resEnv("LC", "limits.cpu", "1m", ""), resEnv("LM", "limits.memory", "1Mi", ""), resEnv("RC", "requests.cpu", "", ""),
			resEnv("LE", "limits.ephemeral-storage", "1Gi", ""),
		}, want: map[string]string{"LC": "250", "LM": "512", "RC": "0", "LE": "20"}},
		{name: "resource of another container", env: []corev1.EnvVar{resEnv("O", "limits.memory", "1Mi", "other")},
			in: nil, want: map[string]string{"O": "256"}},
		{name: "resource of an unknown container", env: []corev1.EnvVar{resEnv("O", "limits.memory", "", "ghost")},
			errKind: errdefs.IsInvalidArgument, errMsg: `names container "ghost"`},
		{name: "unsupported resource", env: []corev1.EnvVar{resEnv("P", "limits.pods", "", "")},
			errKind: errdefs.IsInvalidArgument, errMsg: `unsupported resourceFieldRef "limits.pods"`},
		{name: "valueFrom with no source", env: []corev1.EnvVar{{Name: "E", ValueFrom: &corev1.EnvVarSource{}}},
			errKind: errdefs.IsInvalidArgument, errMsg: `env "E": valueFrom names no source`},
		{name: "kubernetes service", in: func(in *Inputs) { in.KubernetesServiceHost, in.KubernetesServicePort = "10.96.0.1", 443 },
			env: []corev1.EnvVar{{Name: "API", Value: "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"}},
			want: map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
				"KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": "tcp://10.96.0.1:443",
				"KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
				"KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
				"API": "https://10.96.0.1:443"}},
		{name: "kubernetes service over IPv6, overridden by env", in: func(in *Inputs) { in.KubernetesServiceHost, in.KubernetesServicePort = "fd00::1", 6443 },
			env:  []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_PORT", Value: "1"}},
			want: map[string]string{"KUBERNETES_PORT": "tcp://[fd00::1]:6443", "KUBERNETES_SERVICE_PORT": "1"}},
		{name: "no kubernetes service without a host", absent: []string{"KUBERNETES_SERVICE_HOST", "KUBERNETES_PORT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := basePod()
			pod.Spec.Containers[0].Env = tt.env
			pod.Spec.Containers[0].EnvFrom = tt.envFrom
			pod.Spec.Containers[0].Resources = tt.res
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "other", Resources: corev1.ResourceRequirements{
				Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}}})
			if tt.res.Limits == nil {
				// keep the pod at the smallest size for the "provisioned size" rows
				pod.Spec.Containers[1].Resources = corev1.ResourceRequirements{}
				if strings.Contains(tt.name, "another container") {
					pod.Spec.Containers[1].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}
				}
			}
			in := baseInputs()
			if tt.in != nil {
				tt.in(&in)
			}
			got, err := Convert(pod, in)
			if tt.errKind != nil {
				if !tt.errKind(err) || !strings.Contains(fmtErr(err), tt.errMsg) {
					t.Fatalf("Convert = %v, want kind and %q", err, tt.errMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			env := got.Containers[0].Environment
			for k, v := range tt.want {
				if g, ok := env[k]; !ok || g != v {
					t.Errorf("%s = %q (set %v), want %q", k, g, ok, v)
				}
			}
			for _, k := range tt.absent {
				if _, ok := env[k]; ok {
					t.Errorf("%s is set, want unset", k)
				}
			}
		})
	}
}

func TestExpand(t *testing.T) {
	env := map[string]string{"A": "a", "B": "b", "E": ""}
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"$(A)", "a"},
		{"$(A)$(B)", "ab"},
		{"x$(E)y", "xy"},
		{"$(C)", "$(C)"},
		{"$$(A)", "$(A)"},
		{"$$$(A)", "$a"},
		{"$(A", "$(A"},
		{"$", "$"},
		{"a$", "a$"},
		{"$A", "$A"},
		{"$()", "$()"},
	}
	for _, tt := range tests {
		if got := expand(tt.in, env); got != tt.want {
			t.Errorf("expand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

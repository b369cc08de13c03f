package podtask

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"vessel.dev/vessel/internal/sizing"
)

// FuzzConvert converts fuzzed pods (JSON, as the API server hands them to
// the bridge). Properties:
//   - Convert and SecurityProblems never panic, and neither changes the pod;
//   - a pod Convert accepts has no security problems, and its task passes
//     the checks the control plane applies to a submitted task (a Fargate
//     size, at least one container, containers with distinct non-empty
//     names, valid volumes, restart policy, probes, DNS and capabilities);
//   - the task survives a JSON round trip (the bridge stores it as JSON).
func FuzzConvert(f *testing.F) {
	seeds := []string{
		`{"metadata":{"name":"web","namespace":"default","uid":"u1","labels":{"eks.amazonaws.com/fargate-profile":"fp"}},
		  "spec":{"containers":[{"name":"app","image":"nginx","ports":[{"containerPort":80}],
		    "resources":{"requests":{"cpu":"250m","memory":"512Mi"},"limits":{"cpu":"1","memory":"1Gi"}},
		    "env":[{"name":"A","value":"1"},{"name":"B","value":"$(A)-x"},{"name":"IP","valueFrom":{"fieldRef":{"fieldPath":"status.podIP"}}},
		      {"name":"C","valueFrom":{"configMapKeyRef":{"name":"cm","key":"k"}}},{"name":"S","valueFrom":{"secretKeyRef":{"name":"sec","key":"pw"}}},
		      {"name":"M","valueFrom":{"resourceFieldRef":{"resource":"limits.memory","divisor":"1Mi"}}}],
		    "readinessProbe":{"httpGet":{"path":"/","port":80},"periodSeconds":5},
		    "livenessProbe":{"tcpSocket":{"port":"http"}},
		    "volumeMounts":[{"name":"data","mountPath":"/data"},{"name":"cfg","mountPath":"/etc/cfg","readOnly":true}]}],
		  "initContainers":[{"name":"init","image":"busybox","command":["sh","-c","true"]},{"name":"side","image":"busybox","restartPolicy":"Always"}],
		  "volumes":[{"name":"data","emptyDir":{"sizeLimit":"1Gi"}},{"name":"cfg","configMap":{"name":"cm","items":[{"key":"k","path":"a/k","mode":256}]}},
		    {"name":"tok","projected":{"sources":[{"serviceAccountToken":{"path":"token"}},{"downwardAPI":{"items":[{"path":"labels","fieldRef":{"fieldPath":"metadata.labels"}}]}}]}}],
		  "restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst",
		  "dnsConfig":{"nameservers":["1.1.1.1"],"searches":["svc.local"],"options":[{"name":"ndots","value":"2"}]}}}`,
		`{"metadata":{"name":"job"},"spec":{"containers":[{"name":"c","image":"x","securityContext":{"runAsUser":1000,"runAsGroup":1000,
		  "capabilities":{"add":["SYS_PTRACE"],"drop":["ALL"]},"allowPrivilegeEscalation":false,"readOnlyRootFilesystem":true}}],
		  "securityContext":{"fsGroup":2000,"runAsNonRoot":true},"restartPolicy":"OnFailure"}}`,
		`{"spec":{"containers":[{"name":"c","image":"x","securityContext":{"privileged":true}}],"hostNetwork":true}}`,
		`{"spec":{"containers":[{"name":"c","image":"x","resources":{"requests":{"cpu":"64","memory":"1Ti"}}}]}}`,
		`{"spec":{"containers":[{"name":"c","image":"x"},{"name":"c","image":"y"}]}}`,
		`{"spec":{"containers":[]}}`,
		`{"spec":{"containers":[{"name":"c","image":"x","volumeMounts":[{"name":"h","mountPath":"/h"}]}],"volumes":[{"name":"h","hostPath":{"path":"/"}}]}}`,
		`{"spec":{"containers":[{"name":"c","image":"x","startupProbe":{"exec":{"command":["true"]},"failureThreshold":0}}],"restartPolicy":"Never"}}`,
		`{"spec":{"containers":[{"name":"c","image":"x","env":[{"name":"F","valueFrom":{"fieldRef":{"fieldPath":"metadata.annotations['a']"}}}]}],"dnsPolicy":"None"}}`,
		`{"spec":{"containers":[{"name":"c","image":"x","volumeMounts":[{"name":"s","mountPath":"/s","subPath":"../x"}]}],"volumes":[{"name":"s","secret":{"secretName":"sec","optional":true}}]}}`,
	}
	for _, s := range seeds {
		f.Add(s)
	}
	in := Inputs{
		ConfigMaps:            map[string]map[string]string{"cm": {"k": "v", "other": "w"}, "kube-root-ca.crt": {"ca.crt": "PEM"}},
		Secrets:               map[string]map[string][]byte{"sec": {"pw": []byte("hunter2")}},
		KubernetesServiceHost: "10.96.0.1", KubernetesServicePort: 443,
		ClusterName: "default", Subnets: []string{"subnet-vessel"},
		ServiceAccountToken: "token", ClusterDNS: []string{"10.96.0.10"},
	}

	f.Fuzz(func(t *testing.T, podJSON string) {
		var pod corev1.Pod
		if err := json.Unmarshal([]byte(podJSON), &pod); err != nil {
			return
		}
		before := pod.DeepCopy()
		problems := SecurityProblems(&pod)
		tk, err := Convert(&pod, in)
		if !reflect.DeepEqual(before, &pod) {
			t.Fatalf("Convert or SecurityProblems changed the pod")
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("Convert failed with an empty message")
			}
			return
		}
		if len(problems) > 0 {
			t.Fatalf("Convert accepted a pod with security problems %q", problems)
		}
		if err := sizing.ValidateTask(tk.CPUUnits, tk.MemoryMiB); err != nil {
			t.Fatalf("Convert made a task of a size the control plane refuses: %v", err)
		}
		if len(tk.Containers) == 0 {
			t.Fatalf("Convert made a task with no containers from %s", podJSON)
		}
		names := map[string]bool{}
		for _, c := range tk.Containers {
			if c.Name == "" || names[c.Name] {
				t.Fatalf("Convert made a task whose containers' names are empty or repeated: %q", c.Name)
			}
			names[c.Name] = true
			if err := c.Security.Validate(fmt.Sprintf("container %q", c.Name)); err != nil {
				t.Fatalf("Convert made a container whose security settings are invalid: %v", err)
			}
		}
		if err := tk.ValidateVolumes(); err != nil {
			t.Fatalf("Convert made a task with invalid volumes: %v", err)
		}
		if err := tk.ValidateRestartAndProbes(); err != nil {
			t.Fatalf("Convert made a task with an invalid restart policy or probes: %v", err)
		}
		if err := tk.DNS.Validate(); err != nil {
			t.Fatalf("Convert made a task with an invalid DNS configuration: %v", err)
		}
		b, err := json.Marshal(tk)
		if err != nil {
			t.Fatalf("the task does not encode as JSON: %v", err)
		}
		var back any
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("the task's JSON does not decode: %v", err)
		}
	})
}

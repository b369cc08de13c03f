package podtask

import (
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/task"
)

func cmRef(name string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: name} }

func TestConvertVolumeMapping(t *testing.T) {
	file := func(p string, mode uint32, data string) task.VolumeFile {
		return task.VolumeFile{Path: p, Mode: fsMode(mode), Data: []byte(data)}
	}
	tests := []struct {
		name string
		vol  corev1.VolumeSource
		in   func(*Inputs)
		want task.Volume
	}{
		{"emptyDir on disk", corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}, nil,
			task.Volume{Name: "v", EmptyDir: &task.EmptyDir{}}},
		{"emptyDir in memory with a size", corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("100M"))}}, nil,
			task.Volume{Name: "v", EmptyDir: &task.EmptyDir{Medium: task.MediumMemory, SizeLimitMiB: 96}}},
		{"configMap, all keys sorted", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: cmRef("cm")}}, nil,
			task.Volume{Name: "v", Files: []task.VolumeFile{file("A", 0, "1"), file("k", 0, "cm-v")}}},
		{"configMap items and modes", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: cmRef("cm"),
			DefaultMode: ptr[int32](0o440),
			Items:       []corev1.KeyToPath{{Key: "k", Path: "conf/k.txt"}, {Key: "A", Path: "a", Mode: ptr[int32](0o600)}}}}, nil,
			task.Volume{Name: "v", Files: []task.VolumeFile{file("conf/k.txt", 0o440, "cm-v"), file("a", 0o600, "1")}}},
		{"optional missing configMap is empty", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: cmRef("nope"),
			Optional: ptr(true)}}, nil, task.Volume{Name: "v", Files: []task.VolumeFile{}}},
		{"optional configMap skips a missing key", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: cmRef("cm"),
			Optional: ptr(true), Items: []corev1.KeyToPath{{Key: "nokey", Path: "x"}, {Key: "k", Path: "k"}}}}, nil,
			task.Volume{Name: "v", Files: []task.VolumeFile{file("k", 0, "cm-v")}}},
		{"secret with defaultMode", corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec", DefaultMode: ptr[int32](0o400)}}, nil,
			task.Volume{Name: "v", Files: []task.VolumeFile{file("B", 0o400, "2"), file("pw", 0o400, "s3cret")}}},
		{"secret items", corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec",
			Items: []corev1.KeyToPath{{Key: "pw", Path: "password"}}}}, nil,
			task.Volume{Name: "v", Files: []task.VolumeFile{file("password", 0, "s3cret")}}},
		{"downwardAPI", corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
			{Path: "ns", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
			{Path: "uid", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}, Mode: ptr[int32](0o600)},
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
			{Path: "app", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}},
			{Path: "mem", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "app", Resource: "limits.memory",
				Divisor: resource.MustParse("1Mi")}},
		}}}, nil,
			task.Volume{Name: "v", Files: []task.VolumeFile{file("name", 0, "web-1"), file("ns", 0, "shop"), file("uid", 0o600, "uid-123"),
				file("labels", 0, "app=\"web\"\neks.amazonaws.com/fargate-profile=\"fp\""), file("annotations", 0, `team="blue"`),
				file("app", 0, "web"), file("mem", 0, "1024")}}},
		{"projected kube-api-access", corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{DefaultMode: ptr[int32](0o644),
			Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr[int64](3607)}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: cmRef(RootCAConfigMap),
					Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
					{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
			}}}, func(in *Inputs) { in.ClusterCA = []byte("PEM") },
			task.Volume{Name: "v", Files: []task.VolumeFile{file("token", 0o644, "tok"), file("ca.crt", 0o644, "PEM"), file("namespace", 0o644, "shop")}}},
		{"projected: the resolved root CA config map wins over ClusterCA", corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: cmRef(RootCAConfigMap)}}}}},
			func(in *Inputs) {
				in.ClusterCA = []byte("other")
				in.ConfigMaps[RootCAConfigMap] = map[string]string{"ca.crt": "PEM"}
			},
			task.Volume{Name: "v", Files: []task.VolumeFile{file("ca.crt", 0, "PEM")}}},
		{"projected: a later source replaces a path", corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: cmRef("cm"), Items: []corev1.KeyToPath{{Key: "k", Path: "x"}}}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: cmRef("sec"), Items: []corev1.KeyToPath{{Key: "pw", Path: "x"}}}},
			}}}, nil,
			task.Volume{Name: "v", Files: []task.VolumeFile{file("x", 0, "s3cret")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := basePod()
			pod.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: tt.vol}}
			pod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}
			in := baseInputs()
			if tt.in != nil {
				tt.in(&in)
			}
			got, err := Convert(pod, in)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Volumes) != 1 || !reflect.DeepEqual(got.Volumes[0], tt.want) {
				t.Errorf("volumes = %s\nwant     %s", showVolumes(got.Volumes), showVolumes([]task.Volume{tt.want}))
			}
		})
	}
}

func TestConvertVolumeMounts(t *testing.T) {
	pod := basePod()
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: cmRef("cm")}}},
	}
	pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox",
		VolumeMounts: []corev1.VolumeMount{{Name: "cache", MountPath: "/work/"}}}}
	c := &pod.Spec.Containers[0]
	c.Env = []corev1.EnvVar{{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}
	c.VolumeMounts = []corev1.VolumeMount{
		{Name: "cache", MountPath: "/cache"},
		{Name: "cache", MountPath: "/logs", SubPathExpr: "logs/$(POD)"},
		{Name: "conf", MountPath: "/etc/app"},
		{Name: "cache", MountPath: "/ro", ReadOnly: true, SubPath: "ro"},
	}
	got, err := Convert(pod, baseInputs())
	if err != nil {
		t.Fatal(err)
	}
	if want := []task.MountPoint{{SourceVolume: "cache", ContainerPath: "/work"}}; !reflect.DeepEqual(got.Containers[0].MountPoints, want) {
		t.Errorf("init mounts = %+v, want %+v", got.Containers[0].MountPoints, want)
	}
	want := []task.MountPoint{
		{SourceVolume: "cache", ContainerPath: "/cache"},
		{SourceVolume: "cache", ContainerPath: "/logs", SubPath: "logs/web-1"},
		{SourceVolume: "conf", ContainerPath: "/etc/app", ReadOnly: true}, // files volumes are read-only, as the kubelet mounts them
		{SourceVolume: "cache", ContainerPath: "/ro", ReadOnly: true, SubPath: "ro"},
	}
	if !reflect.DeepEqual(got.Containers[1].MountPoints, want) {
		t.Errorf("mounts = %+v\nwant %+v", got.Containers[1].MountPoints, want)
	}
}

func TestConvertVolumeErrors(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*corev1.Pod)
		kind    func(error) bool
		wantMsg string
	}{
		{"missing configMap key", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: cmRef("cm"), Items: []corev1.KeyToPath{{Key: "nokey", Path: "x"}}}}}}
		}, errdefs.IsNotFound, `volume "c": key "nokey" not found in configmap "cm"`},
		{"missing secret key", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: "sec", Items: []corev1.KeyToPath{{Key: "nokey", Path: "x"}}}}}}
		}, errdefs.IsNotFound, `volume "s": key "nokey" not found in secret "sec"`},
		{"item path escapes", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: cmRef("cm"), Items: []corev1.KeyToPath{{Key: "k", Path: "../../etc/passwd"}}}}}}
		}, errdefs.IsInvalidArgument, `volume "c": path "../../etc/passwd" must be relative and must not contain or start with '..'`},
		{"item path absolute", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: cmRef("cm"), Items: []corev1.KeyToPath{{Key: "k", Path: "/etc/passwd"}}}}}}
		}, errdefs.IsInvalidArgument, `path "/etc/passwd" must be relative`},
		{"mode out of range", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: cmRef("cm"), DefaultMode: ptr[int32](0o7777)}}}}
		}, errdefs.IsInvalidArgument, "accepted modes are 0000..0777"},
		{"emptyDir medium", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: "HugePages-2Mi"}}}}
		}, errdefs.IsInvalidArgument, `volume "e": emptyDir medium "HugePages-2Mi" is not supported`},
		{"downwardAPI field not allowed in volumes", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
				Items: []corev1.DownwardAPIVolumeFile{{Path: "ip", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}}}}}
		}, errdefs.IsInvalidArgument, `volume "d": downwardAPI "ip": unsupported fieldRef "status.podIP" in a volume`},
		{"resourceFieldRef without container", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
				Items: []corev1.DownwardAPIVolumeFile{{Path: "cpu", ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}}}}}}
		}, errdefs.IsInvalidArgument, `must name its containerName`},
		{"mount of an unknown volume", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "nope", MountPath: "/x"}}
		}, errdefs.IsInvalidArgument, `container "app" mounts volume "nope", which the task does not define`},
		{"relative mountPath", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "e", MountPath: "data"}}
		}, errdefs.IsInvalidArgument, `container "app": volumeMount "e": mountPath "data" must be an absolute path`},
		{"subPath escapes", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "e", MountPath: "/d", SubPath: "a/../../b"}}
		}, errdefs.IsInvalidArgument, `subPath "../b" must not contain ".."`},
		{"subPathExpr escapes", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "X", Value: ".."}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "e", MountPath: "/d", SubPathExpr: "$(X)"}}
		}, errdefs.IsInvalidArgument, `subPath ".." must not contain ".."`},
		{"two mounts at one path", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "e", MountPath: "/d"}, {Name: "e", MountPath: "/d/"}}
		}, errdefs.IsInvalidArgument, `container "app" mounts two volumes at /d`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := basePod()
			tt.mod(pod)
			_, err := Convert(pod, baseInputs())
			if !tt.kind(err) || !strings.Contains(fmtErr(err), tt.wantMsg) {
				t.Errorf("Convert = %v, want kind and %q", err, tt.wantMsg)
			}
		})
	}
}

func showVolumes(vs []task.Volume) string {
	var b strings.Builder
	for _, v := range vs {
		b.WriteString(v.Name)
		if v.EmptyDir != nil {
			fmt.Fprintf(&b, " emptyDir%+v", *v.EmptyDir)
		}
		for _, f := range v.Files {
			fmt.Fprintf(&b, " [%s %v %q]", f.Path, f.Mode, f.Data)
		}
		if v.Files != nil && len(v.Files) == 0 {
			b.WriteString(" (no files)")
		}
		b.WriteString("; ")
	}
	return b.String()
}

func fsMode(m uint32) fs.FileMode { return fs.FileMode(m) }

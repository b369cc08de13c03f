package podtask

import (
	"io/fs"
	"math"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/task"
)

// RootCAConfigMap is the config map Kubernetes publishes the cluster's CA
// in, in every namespace; a pod's kube-api-access-* volume projects its
// ca.crt. When the caller did not resolve it, Inputs.ClusterCA stands in.
const RootCAConfigMap = "kube-root-ca.crt"

// volumes maps pod.spec.volumes to task volumes, as the kubelet would
// materialize them: an emptyDir stays an emptyDir; configMap, secret,
// downwardAPI and projected volumes become the files they would hold.
func (r *resolver) volumes() ([]task.Volume, error) {
	var out []task.Volume
	for _, v := range r.pod.Spec.Volumes {
		vs := v.VolumeSource
		tv := task.Volume{Name: v.Name}
		var err error
		switch {
		case vs.EmptyDir != nil:
			tv.EmptyDir, err = emptyDir(v.Name, vs.EmptyDir)
		case vs.ConfigMap != nil:
			s := vs.ConfigMap
			f := r.files(v.Name, mode(s.DefaultMode))
			err = f.configMap(s.Name, s.Items, s.Optional)
			tv.Files = f.list()
		case vs.Secret != nil:
			s := vs.Secret
			f := r.files(v.Name, mode(s.DefaultMode))
			err = f.secret(s.SecretName, s.Items, s.Optional)
			tv.Files = f.list()
		case vs.DownwardAPI != nil:
			f := r.files(v.Name, mode(vs.DownwardAPI.DefaultMode))
			err = f.downwardAPI(vs.DownwardAPI.Items)
			tv.Files = f.list()
		case vs.Projected != nil:
			f := r.files(v.Name, mode(vs.Projected.DefaultMode))
			for i, s := range vs.Projected.Sources {
				switch {
				case s.ConfigMap != nil:
					err = f.configMap(s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional)
				case s.Secret != nil:
					err = f.secret(s.Secret.Name, s.Secret.Items, s.Secret.Optional)
				case s.DownwardAPI != nil:
					err = f.downwardAPI(s.DownwardAPI.Items)
				case s.ServiceAccountToken != nil:
					err = f.token(s.ServiceAccountToken)
				default:
					err = errdefs.InvalidArgument(
						"volume %q: projected source %d is of an unsupported type; Vessel supports configMap, secret, downwardAPI and serviceAccountToken sources",
						v.Name, i)
				}
				if err != nil {
					break
				}
			}
			tv.Files = f.list()
		default:
			err = errdefs.InvalidArgument(
				"volume %q is of an unsupported volume type (%s); Vessel supports emptyDir, configMap, secret, downwardAPI and projected volumes",
				v.Name, volumeType(vs))
		}
		if err != nil {
			return nil, err
		}
		if tv.EmptyDir == nil && tv.Files == nil {
			tv.Files = []task.VolumeFile{} // an optional source that is missing: an empty directory
		}
		out = append(out, tv)
	}
	return out, nil
}

func emptyDir(volume string, e *corev1.EmptyDirVolumeSource) (*task.EmptyDir, error) {
	out := &task.EmptyDir{}
	switch e.Medium {
	case corev1.StorageMediumDefault:
	case corev1.StorageMediumMemory:
		out.Medium = task.MediumMemory
	default:
		return nil, errdefs.InvalidArgument("volume %q: emptyDir medium %q is not supported; use \"\" (disk) or \"Memory\"", volume, e.Medium)
	}
	if e.SizeLimit != nil && !e.SizeLimit.IsZero() {
		if e.SizeLimit.Sign() < 0 {
			return nil, errdefs.InvalidArgument("volume %q: emptyDir sizeLimit %s is negative", volume, e.SizeLimit)
		}
		out.SizeLimitMiB = int64(math.Ceil(float64(e.SizeLimit.Value()) / (1 << 20)))
	}
	return out, nil
}

// mode turns a Kubernetes mode (nil = unset) into a file mode; 0 = unset.
func mode(m *int32) fs.FileMode {
	if m == nil {
		return 0
	}
	return fs.FileMode(*m)
}

// volumeFiles collects the files of one volume; a later source writing the
// same path replaces an earlier one's file, as the kubelet's projection.
type volumeFiles struct {
	r           *resolver
	volume      string
	defaultMode fs.FileMode
	files       []task.VolumeFile
	at          map[string]int
}

func (r *resolver) files(volume string, defaultMode fs.FileMode) *volumeFiles {
	return &volumeFiles{r: r, volume: volume, defaultMode: defaultMode, at: map[string]int{}}
}

func (f *volumeFiles) add(p string, m *int32, data []byte) error {
	if p == "" || path.IsAbs(p) || strings.HasPrefix(p, "..") || slices.Contains(strings.Split(p, "/"), "..") {
		return errdefs.InvalidArgument("volume %q: path %q must be relative and must not contain or start with '..'", f.volume, p)
	}
	fm := f.defaultMode
	if m != nil {
		fm = fs.FileMode(*m)
	}
	if fm&^fs.ModePerm != 0 {
		return errdefs.InvalidArgument("volume %q: path %q: mode %#o is out of range; accepted modes are 0000..0777", f.volume, p, uint32(fm))
	}
	vf := task.VolumeFile{Path: path.Clean(p), Mode: fm, Data: data}
	if i, ok := f.at[vf.Path]; ok {
		f.files[i] = vf
		return nil
	}
	f.at[vf.Path] = len(f.files)
	f.files = append(f.files, vf)
	return nil
}

func (f *volumeFiles) list() []task.VolumeFile {
	if f.files == nil {
		return []task.VolumeFile{}
	}
	return f.files
}

// configMap adds a config map's keys (all, or items); a missing config map
// or key is an error unless optional.
func (f *volumeFiles) configMap(name string, items []corev1.KeyToPath, optional *bool) error {
	data, ok := f.r.in.ConfigMaps[name]
	if !ok && name == RootCAConfigMap && len(f.r.in.ClusterCA) > 0 {
		data, ok = map[string]string{"ca.crt": string(f.r.in.ClusterCA)}, true
	}
	if !ok {
		if isTrue(optional) {
			return nil
		}
		return errdefs.NotFound("volume %q: configmap %q not found; create it or mark the volume optional", f.volume, name)
	}
	bytes := make(map[string][]byte, len(data))
	for k, v := range data {
		bytes[k] = []byte(v)
	}
	return f.keys("configmap", name, bytes, items, optional)
}

func (f *volumeFiles) secret(name string, items []corev1.KeyToPath, optional *bool) error {
	data, ok := f.r.in.Secrets[name]
	if !ok {
		if isTrue(optional) {
			return nil
		}
		return errdefs.NotFound("volume %q: secret %q not found; create it or mark the volume optional", f.volume, name)
	}
	return f.keys("secret", name, data, items, optional)
}

func (f *volumeFiles) keys(kind, name string, data map[string][]byte, items []corev1.KeyToPath, optional *bool) error {
	if len(items) == 0 {
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := f.add(k, nil, data[k]); err != nil {
				return err
			}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if isTrue(optional) {
				continue
			}
			return errdefs.NotFound("volume %q: key %q not found in %s %q; add it or mark the volume optional", f.volume, it.Key, kind, name)
		}
		if err := f.add(it.Path, it.Mode, v); err != nil {
			return err
		}
	}
	return nil
}

func (f *volumeFiles) downwardAPI(items []corev1.DownwardAPIVolumeFile) error {
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = f.r.volumeField(it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			v, err = f.r.volumeResource(it.ResourceFieldRef)
		default:
			err = errdefs.InvalidArgument("item names neither fieldRef nor resourceFieldRef")
		}
		if err != nil {
			return errdefs.InvalidArgument("volume %q: downwardAPI %q: %v", f.volume, it.Path, err)
		}
		if err := f.add(it.Path, it.Mode, []byte(v)); err != nil {
			return err
		}
	}
	return nil
}

func (f *volumeFiles) token(s *corev1.ServiceAccountTokenProjection) error {
	if f.r.in.ServiceAccountToken == "" {
		return errdefs.InvalidArgument("volume %q: a serviceAccountToken source needs the pod's token, which was not resolved (Inputs.ServiceAccountToken is empty)", f.volume)
	}
	return f.add(s.Path, nil, []byte(f.r.in.ServiceAccountToken))
}

// volumeField resolves a downward API field path as a volume file: the
// metadata fields Kubernetes allows in volumes, labels and annotations as
// key="value" lines sorted by key.
func (r *resolver) volumeField(p string) (string, error) {
	switch p {
	case "metadata.labels":
		return formatMap(r.pod.Labels), nil
	case "metadata.annotations":
		return formatMap(r.pod.Annotations), nil
	case "metadata.name", "metadata.namespace", "metadata.uid":
		return r.field(p)
	}
	if _, ok := subscript(p, "metadata.labels"); ok {
		return r.field(p)
	}
	if _, ok := subscript(p, "metadata.annotations"); ok {
		return r.field(p)
	}
	return "", errdefs.InvalidArgument("unsupported fieldRef %q in a volume; supported: metadata.name, metadata.namespace, "+
		"metadata.uid, metadata.labels, metadata.annotations, metadata.labels['<key>'], metadata.annotations['<key>']", p)
}

// volumeResource resolves a resourceFieldRef of a volume, which must name
// its container.
func (r *resolver) volumeResource(ref *corev1.ResourceFieldSelector) (string, error) {
	if ref.ContainerName == "" {
		return "", errdefs.InvalidArgument("resourceFieldRef %q in a volume must name its containerName", ref.Resource)
	}
	for _, list := range [][]corev1.Container{r.pod.Spec.Containers, r.pod.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == ref.ContainerName {
				return r.resource(&list[i], ref)
			}
		}
	}
	return "", errdefs.InvalidArgument("resourceFieldRef names container %q, which the pod does not have", ref.ContainerName)
}

// formatMap writes labels or annotations as the kubelet does: key="value"
// lines (Go-quoted values) sorted by key, without a final newline.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(k + "=" + strconv.Quote(m[k]))
	}
	return b.String()
}

// mounts maps a container's volumeMounts. Volumes of files (configMap,
// secret, downwardAPI, projected) are mounted read-only, as the kubelet
// does; subPathExpr is expanded with the container's environment.
func (r *resolver) mounts(c *corev1.Container, env map[string]string) ([]task.MountPoint, error) {
	var out []task.MountPoint
	for _, m := range c.VolumeMounts {
		mp := task.MountPoint{SourceVolume: m.Name, ContainerPath: path.Clean(m.MountPath), ReadOnly: m.ReadOnly, SubPath: m.SubPath}
		if !path.IsAbs(m.MountPath) {
			return nil, errdefs.InvalidArgument("container %q: volumeMount %q: mountPath %q must be an absolute path", c.Name, m.Name, m.MountPath)
		}
		if m.SubPathExpr != "" {
			if m.SubPath != "" {
				return nil, errdefs.InvalidArgument("container %q: volumeMount %q sets both subPath and subPathExpr; set one", c.Name, m.Name)
			}
			mp.SubPath = expand(m.SubPathExpr, env)
		}
		if mp.SubPath != "" {
			mp.SubPath = path.Clean(mp.SubPath)
		}
		for _, v := range r.pod.Spec.Volumes {
			if v.Name == m.Name && v.EmptyDir == nil {
				mp.ReadOnly = true
			}
		}
		out = append(out, mp)
	}
	return out, nil
}

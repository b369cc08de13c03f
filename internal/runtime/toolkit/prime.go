package toolkit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
)

// Prime is the frame of runtime.Primer's Prime: with warm sandbox
// spec.ID's lock held, it checks that the sandbox is warm and not primed
// yet and that spec can be primed (same network namespace, no volumes,
// no log directory), writes the containers into the warm record first
// (so that Destroy finds what follows), prepares their bundles
// (PrepareContainers) and calls create for each container, which creates
// it up to its process (conmon and the OCI runtime's create) and returns
// its init's PID. The digest of the /etc files the containers bound is
// kept with them: Claim takes the containers only while those files hold
// what they held here. When anything fails, Destroy removes the whole
// warm sandbox.
func (s *Sandboxes) Prime(ctx context.Context, spec runtime.Spec, create func(rec *ConmonRecord, name string) (int, error)) (err error) {
	if err := spec.Validate(); err != nil {
		return err
	}
	if spec.LogDir != "" {
		return errdefs.InvalidArgument("primed sandbox %s: a log directory is the task's (Claim gives it); got %q", spec.ID, spec.LogDir)
	}
	for _, c := range spec.Containers {
		if len(c.Mounts) > 0 {
			return errdefs.InvalidArgument("primed sandbox %s: container %q has volumes; volumes are the task's, so a container with volumes cannot be created ahead of it",
				spec.ID, c.Name)
		}
	}
	FillDefaults(&spec)
	unlock := s.Lock(spec.ID)
	defer unlock()
	rec, err := s.Load(spec.ID)
	if errdefs.IsNotFound(err) || (err == nil && !rec.Warm) {
		return errdefs.NotFound("no warm sandbox %s (never made, deleted or already claimed)", spec.ID)
	}
	if err != nil {
		return err
	}
	if len(rec.Spec.Containers) > 0 {
		return errdefs.Conflict("warm sandbox %s is primed already; a warm sandbox is primed once", spec.ID)
	}
	if spec.NetNSPath != rec.Spec.NetNSPath {
		return errdefs.Conflict("warm sandbox %s is in network namespace %q, not %q: prime it with the namespace it was warmed in",
			spec.ID, rec.Spec.NetNSPath, spec.NetNSPath)
	}
	if spec.EphemeralStorageGiB > rec.Spec.EphemeralStorageGiB {
		return errdefs.Conflict("warm sandbox %s has %d GiB of ephemeral storage, the primed spec asks for %d GiB",
			spec.ID, rec.Spec.EphemeralStorageGiB, spec.EphemeralStorageGiB)
	}
	if spec.Hostname == "" {
		spec.Hostname = spec.ID
	}
	defer func() {
		if err != nil {
			if derr := s.Destroy(context.WithoutCancel(ctx), rec); derr != nil {
				s.Log.Warn(s.Name+": cleanup after a failed Prime", "warm_sandbox", spec.ID, "err", derr)
			}
			// Of no kind that says the sandbox was left as it was.
			err = s.errorf("warm sandbox %s was deleted: priming it failed: %v", spec.ID, err)
		}
	}()
	rec.Spec.Containers, rec.Spec.Hostname, rec.Spec.EtcDir, rec.Spec.LogMaxBytes = spec.Containers, spec.Hostname, spec.EtcDir, spec.LogMaxBytes
	rec.Primed = map[string]int{}
	if err := s.Save(rec); err != nil {
		return s.errorf("%w", err)
	}
	if err := s.PrepareContainers(rec, nil); err != nil {
		return err
	}
	if rec.PrimedEtc, err = etcDigest(s.etcDirOf(rec)); err != nil {
		return s.errorf("primed sandbox %s: %w", spec.ID, err)
	}
	for _, c := range spec.Containers {
		pid, err := create(rec, c.Name)
		if err != nil {
			return s.errorf("prime %s/%s: %w", spec.ID, c.Name, err)
		}
		rec.Primed[c.Name] = pid
		if err := s.Save(rec); err != nil {
			return s.errorf("%w", err)
		}
	}
	return nil
}

// etcDirOf is where the sandbox's containers bind hosts, hostname and
// resolv.conf from (PrepareContainers).
func (s *Sandboxes) etcDirOf(rec *ConmonRecord) string {
	if rec.Spec.EtcDir != "" {
		return rec.Spec.EtcDir
	}
	return filepath.Join(s.SandboxDir(rec.Spec.ID), "etc")
}

// etcDigest is a digest of the /etc files in dir a container binds.
func etcDigest(dir string) (string, error) {
	h := sha256.New()
	for _, f := range []string{"hosts", "hostname", "resolv.conf"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// PrimedServes reports whether warm sandbox warm's primed containers are
// exactly what spec would create: the same containers (compared as the
// record stores them), hostname, /etc directory with the same content
// as when they were created (a container sees the files it bound then,
// not ones written since under the same names) and log cap. spec has its
// defaults filled in (Claim's frame does).
func (s *Sandboxes) PrimedServes(warm *ConmonRecord, spec runtime.Spec) bool {
	if len(warm.Primed) == 0 || len(warm.Primed) != len(warm.Spec.Containers) {
		return false
	}
	if spec.Hostname == "" {
		spec.Hostname = spec.ID
	}
	if spec.Hostname != warm.Spec.Hostname || spec.EtcDir != warm.Spec.EtcDir || spec.LogMaxBytes != warm.Spec.LogMaxBytes {
		return false
	}
	a, err1 := json.Marshal(spec.Containers)
	b, err2 := json.Marshal(warm.Spec.Containers)
	if err1 != nil || err2 != nil || string(a) != string(b) {
		return false
	}
	now, err := etcDigest(s.etcDirOf(warm))
	return err == nil && now == warm.PrimedEtc
}

// AdoptPrimed makes claimed sandbox rec keep warm's primed containers:
// their names (rec.PrimedAs) and inits, and their logs, which conmon writes
// under the warm sandbox's logs/ until now: each moves into rec's log
// directory, and logs/ becomes a link to it (conmon reopens the path it
// was given when it rotates a log). rec's directory is the warm
// sandbox's (the claim's mapping). An error leaves the containers as
// they were, for Unprime.
func (s *Sandboxes) AdoptPrimed(rec, warm *ConmonRecord) error {
	dir := s.SandboxDir(rec.Spec.ID)
	old := filepath.Join(dir, "logs")
	if err := os.MkdirAll(rec.Spec.LogDir, 0o755); err != nil {
		return err
	}
	var moved []string
	undo := func(err error) error {
		for _, n := range moved {
			os.Rename(filepath.Join(rec.Spec.LogDir, n+".log"), filepath.Join(old, n+".log"))
		}
		return err
	}
	for _, n := range warm.Names() {
		to := filepath.Join(rec.Spec.LogDir, n+".log")
		if _, err := os.Lstat(to); err == nil {
			return undo(fmt.Errorf("log %s exists already", to))
		}
		if err := os.Rename(filepath.Join(old, n+".log"), to); err != nil {
			return undo(err)
		}
		moved = append(moved, n)
	}
	if err := os.Remove(old); err != nil {
		return undo(err)
	}
	if err := os.Symlink(rec.Spec.LogDir, old); err != nil {
		os.Mkdir(old, 0o755)
		return undo(err)
	}
	rec.PrimedAs, rec.Primed, rec.PrimedEtc, rec.IDEnd = warm.Spec.ID, warm.Primed, warm.PrimedEtc, warm.IDEnd
	return nil
}

// Unprime removes warm's primed containers from claimed sandbox rec's
// directory (a claim of other containers): each is killed and deleted
// by remove (the OCI runtime's), its conmon waited for, its root file
// system unmounted, its bundle, writable layer, log and exit file
// removed, so that the claim prepares its own containers on a clean
// sandbox.
func (s *Sandboxes) Unprime(rec, warm *ConmonRecord, remove func(cid string) error) error {
	dir := s.SandboxDir(rec.Spec.ID)
	var errs []error
	for _, n := range warm.Names() {
		if err := remove(warm.ContainerID(n)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, n := range warm.Names() {
		s.WaitConmon(rec.Spec.ID, n, "its primed container was deleted")
		if err := Unmount(filepath.Join(dir, "containers", n, "rootfs")); err != nil {
			return err
		}
		for _, p := range []string{filepath.Join(dir, "containers", n), filepath.Join(dir, "rw", n),
			filepath.Join(dir, "logs", n+".log"), filepath.Join(s.exitDir(warm), warm.ContainerID(n)),
			filepath.Join(s.exitDir(warm), "persist", n)} {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
		}
	}
	return nil
}

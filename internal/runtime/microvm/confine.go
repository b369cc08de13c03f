package microvm

import (
	"fmt"
	"slices"

	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/guestproto"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/seccomp"
)

// capNumbers are the capabilities of linux/capability.h by name.
var capNumbers = map[string]int{
	"CAP_CHOWN": unix.CAP_CHOWN, "CAP_DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE,
	"CAP_DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH, "CAP_FOWNER": unix.CAP_FOWNER,
	"CAP_FSETID": unix.CAP_FSETID, "CAP_KILL": unix.CAP_KILL, "CAP_SETGID": unix.CAP_SETGID,
	"CAP_SETUID": unix.CAP_SETUID, "CAP_SETPCAP": unix.CAP_SETPCAP,
	"CAP_LINUX_IMMUTABLE": unix.CAP_LINUX_IMMUTABLE, "CAP_NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE,
	"CAP_NET_BROADCAST": unix.CAP_NET_BROADCAST, "CAP_NET_ADMIN": unix.CAP_NET_ADMIN,
	"CAP_NET_RAW": unix.CAP_NET_RAW, "CAP_IPC_LOCK": unix.CAP_IPC_LOCK, "CAP_IPC_OWNER": unix.CAP_IPC_OWNER,
	"CAP_SYS_MODULE": unix.CAP_SYS_MODULE, "CAP_SYS_RAWIO": unix.CAP_SYS_RAWIO,
	"CAP_SYS_CHROOT": unix.CAP_SYS_CHROOT, "CAP_SYS_PTRACE": unix.CAP_SYS_PTRACE,
	"CAP_SYS_PACCT": unix.CAP_SYS_PACCT, "CAP_SYS_ADMIN": unix.CAP_SYS_ADMIN,
	"CAP_SYS_BOOT": unix.CAP_SYS_BOOT, "CAP_SYS_NICE": unix.CAP_SYS_NICE,
	"CAP_SYS_RESOURCE": unix.CAP_SYS_RESOURCE, "CAP_SYS_TIME": unix.CAP_SYS_TIME,
	"CAP_SYS_TTY_CONFIG": unix.CAP_SYS_TTY_CONFIG, "CAP_MKNOD": unix.CAP_MKNOD, "CAP_LEASE": unix.CAP_LEASE,
	"CAP_AUDIT_WRITE": unix.CAP_AUDIT_WRITE, "CAP_AUDIT_CONTROL": unix.CAP_AUDIT_CONTROL,
	"CAP_SETFCAP": unix.CAP_SETFCAP, "CAP_MAC_OVERRIDE": unix.CAP_MAC_OVERRIDE,
	"CAP_MAC_ADMIN": unix.CAP_MAC_ADMIN, "CAP_SYSLOG": unix.CAP_SYSLOG, "CAP_WAKE_ALARM": unix.CAP_WAKE_ALARM,
	"CAP_BLOCK_SUSPEND": unix.CAP_BLOCK_SUSPEND, "CAP_AUDIT_READ": unix.CAP_AUDIT_READ,
	"CAP_PERFMON": unix.CAP_PERFMON, "CAP_BPF": unix.CAP_BPF, "CAP_CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
}

// capabilityNames is a container's capability set: its own, or the
// default set for nil.
func capabilityNames(s runtime.Security) []string {
	if s.Capabilities != nil {
		return s.Capabilities
	}
	return runtime.DefaultCapabilities
}

// guestSecurity is what the guest needs to confine a container as runc
// does on the host: capability numbers and the compiled seccomp filter.
func guestSecurity(s runtime.Security) (guestproto.Security, error) {
	names := capabilityNames(s)
	out := guestproto.Security{Capabilities: []int{}, ReadOnlyRootfs: s.ReadOnlyRootfs, RunAsNonRoot: s.RunAsNonRoot,
		SupplementalGroups: s.SupplementalGroups, Init: s.Init,
		MaskedPaths: runtime.MaskedPaths, ReadonlyPaths: runtime.ReadonlyPaths}
	for _, n := range names {
		c, ok := capNumbers[n]
		if !ok {
			return guestproto.Security{}, errdefs.InvalidArgument("capability %q: unknown (want a CAP_ name of linux/capability.h)", n)
		}
		out.Capabilities = append(out.Capabilities, c)
	}
	profile, err := seccomp.Profile(names)
	if err != nil {
		return guestproto.Security{}, fmt.Errorf("seccomp profile: %w", err)
	}
	if out.Seccomp, err = compileSeccomp(profile); err != nil {
		return guestproto.Security{}, fmt.Errorf("seccomp profile: %w", err)
	}
	return out, nil
}

// compileSeccomp compiles an OCI seccomp profile to classic BPF for
// x86_64 (the only guest architecture), with libseccomp's meaning: a call
// matches a rule when its number is one of the rule's names and every
// argument condition holds; the first matching rule's action is taken,
// else the default one. Calls of another architecture (i386 through int
// 0x80) get the default action and x32 calls ENOSYS (runc's libseccomp
// would apply the rules to them: stricter here). Names the x86_64 table
// lacks (other architectures' calls) are skipped, as libseccomp does.
// Actions: allow and errno.
func compileSeccomp(p *specs.LinuxSeccomp) ([]guestproto.SockFilter, error) {
	retErrno := func(errno uint) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(errno&unix.SECCOMP_RET_DATA) }
	action := func(a specs.LinuxSeccompAction, errno *uint) (uint32, error) {
		switch a {
		case specs.ActAllow:
			return unix.SECCOMP_RET_ALLOW, nil
		case specs.ActErrno:
			if errno == nil {
				return retErrno(uint(unix.EPERM)), nil
			}
			return retErrno(*errno), nil
		}
		return 0, fmt.Errorf("action %s is not supported (allow and errno are)", a)
	}
	def, err := action(p.DefaultAction, p.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("default %w", err)
	}
	const (
		offNr   = 0
		offArch = 4
		offArgs = 16
	)
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(arch.X86_64.ID), SkipTrue: 1},
		bpf.RetConstant{Val: def},
		bpf.LoadAbsolute{Off: offNr, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(arch.X32.SeccompMask), SkipFalse: 1},
		bpf.RetConstant{Val: retErrno(uint(unix.ENOSYS))},
	}
	// Each call's rules, in the profile's order (only the order among
	// one call's rules matters), then the default action.
	bodies := map[uint32][]bpf.Instruction{}
	for _, rule := range p.Syscalls {
		ret, err := action(rule.Action, rule.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("syscalls %v: %w", rule.Names, err)
		}
		for _, name := range rule.Names {
			nr, ok := arch.X86_64.SyscallNames[name]
			if !ok {
				continue
			}
			block, err := ruleBlock(rule.Args, ret)
			if err != nil {
				return nil, fmt.Errorf("syscall %s: %w", name, err)
			}
			bodies[uint32(nr)] = append(bodies[uint32(nr)], block...)
		}
	}
	nrs := make([]uint32, 0, len(bodies))
	for nr, b := range bodies {
		if len(b) > 250 {
			return nil, fmt.Errorf("syscall %d: too many rules", nr)
		}
		bodies[nr] = append(b, bpf.RetConstant{Val: def})
		nrs = append(nrs, nr)
	}
	slices.Sort(nrs)
	// A binary search on the call's number (A holds it) down to short
	// runs of compares, as libseccomp builds a tree: a call costs a few
	// dozen instructions, not the whole list.
	prog = append(prog, searchTree(nrs, bodies)...)
	prog = append(prog, bpf.RetConstant{Val: def})
	if len(prog) > 4096 {
		return nil, fmt.Errorf("%d instructions: over the kernel's 4096", len(prog))
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, err
	}
	out := make([]guestproto.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = guestproto.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}

// fail marks a jump to the end of a rule's block (the rule does not
// match), patched once the block is complete.
const fail = 0xff

// searchTree finds the call's number among nrs (sorted) and runs its
// body; a number not there falls through past the tree.
func searchTree(nrs []uint32, bodies map[uint32][]bpf.Instruction) []bpf.Instruction {
	if len(nrs) <= 4 {
		var out []bpf.Instruction
		for _, nr := range nrs {
			b := bodies[nr]
			out = append(out, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipFalse: uint8(len(b))})
			out = append(out, b...)
		}
		return out
	}
	mid := len(nrs) / 2
	left := searchTree(nrs[:mid], bodies)
	right := searchTree(nrs[mid:], bodies)
	// A < nrs[mid]: the left half, which falls through past the right
	// one when it does not hold the call.
	out := []bpf.Instruction{
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: nrs[mid], SkipTrue: 0, SkipFalse: 1},
		bpf.Jump{Skip: uint32(len(left) + 1)},
	}
	out = append(out, left...)
	out = append(out, bpf.Jump{Skip: uint32(len(right))})
	return append(out, right...)
}

// ruleBlock is one rule for one call (whose number has been matched):
// check each argument condition (each a 64-bit compare as two 32-bit
// words), return the action; any mismatch jumps past the block.
func ruleBlock(args []specs.LinuxSeccompArg, ret uint32) ([]bpf.Instruction, error) {
	var b []bpf.Instruction
	for _, a := range args {
		if a.Index > 5 {
			return nil, fmt.Errorf("argument index %d: want 0 to 5", a.Index)
		}
		lo := bpf.LoadAbsolute{Off: 16 + 8*uint32(a.Index), Size: 4}
		hi := bpf.LoadAbsolute{Off: 16 + 8*uint32(a.Index) + 4, Size: 4}
		vhi, vlo := uint32(a.Value>>32), uint32(a.Value)
		switch a.Op {
		case specs.OpEqualTo:
			b = append(b, hi, bpf.JumpIf{Cond: bpf.JumpEqual, Val: vhi, SkipFalse: fail},
				lo, bpf.JumpIf{Cond: bpf.JumpEqual, Val: vlo, SkipFalse: fail})
		case specs.OpNotEqual:
			b = append(b, hi, bpf.JumpIf{Cond: bpf.JumpEqual, Val: vhi, SkipFalse: 2},
				lo, bpf.JumpIf{Cond: bpf.JumpEqual, Val: vlo, SkipTrue: fail})
		case specs.OpLessThan, specs.OpLessEqual:
			last := bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: vlo, SkipTrue: fail}
			if a.Op == specs.OpLessEqual {
				last.Cond = bpf.JumpGreaterThan
			}
			b = append(b, hi, bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: vhi, SkipTrue: fail},
				bpf.JumpIf{Cond: bpf.JumpEqual, Val: vhi, SkipFalse: 2}, lo, last)
		case specs.OpGreaterThan, specs.OpGreaterEqual:
			last := bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: vlo, SkipFalse: fail}
			if a.Op == specs.OpGreaterEqual {
				last.Cond = bpf.JumpGreaterOrEqual
			}
			b = append(b, hi, bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: vhi, SkipTrue: 3},
				bpf.JumpIf{Cond: bpf.JumpEqual, Val: vhi, SkipFalse: fail}, lo, last)
		case specs.OpMaskedEqual:
			// Value is the mask, ValueTwo the datum.
			d := a.ValueTwo
			b = append(b, hi, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: vhi},
				bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(d >> 32), SkipFalse: fail},
				lo, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: vlo},
				bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(d), SkipFalse: fail})
		default:
			return nil, fmt.Errorf("operator %s is not supported", a.Op)
		}
	}
	b = append(b, bpf.RetConstant{Val: ret})
	if len(b) > 250 {
		return nil, fmt.Errorf("%d conditions: too many for one rule", len(args))
	}
	for i, inst := range b {
		if j, ok := inst.(bpf.JumpIf); ok {
			skip := uint8(len(b) - i - 1)
			if j.SkipTrue == fail {
				j.SkipTrue = skip
			}
			if j.SkipFalse == fail {
				j.SkipFalse = skip
			}
			b[i] = j
		}
	}
	return b, nil
}

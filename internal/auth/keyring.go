package auth

import (
	"context"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"vessel.dev/vessel/internal/errdefs"
)

// Policies a key may carry. A key with no policy (keys written before
// policies existed) is an admin key.
const (
	// PolicyAdmin allows every action.
	PolicyAdmin = "admin"
	// PolicyOperator allows every action except managing keys, join tokens
	// and hosts' identities (the vessel:*Credential*, vessel:*JoinToken*,
	// vessel:RevokeHost and vessel:RemoveHost actions), and except the
	// agent protocol.
	PolicyOperator = "operator"
	// PolicyReadOnly allows reading: Describe*, List*, Get* actions and
	// task logs.
	PolicyReadOnly = "read-only"
	// PolicyCustom allows exactly the actions in Key.Allow, each an action
	// name ("ecs:RunTask") or a pattern with * ("ecs:Describe*", "eks:*").
	PolicyCustom = "custom"
	// PolicyHost is a host agent's credential: the agent protocol, and only
	// for Key.HostID.
	PolicyHost = "host"
)

// Policies lists the policy names a key may be created with.
var Policies = []string{PolicyAdmin, PolicyOperator, PolicyReadOnly, PolicyCustom, PolicyHost}

// Keyring is where a Verifier finds the keys it accepts, and where the
// control plane keeps them. Implementations are safe for concurrent use.
type Keyring interface {
	// Lookup returns the key with this access key ID, secret included, or
	// an error of kind errdefs.ErrNotFound.
	Lookup(ctx context.Context, accessKeyID string) (Key, error)
	// List returns every key, secrets included, ordered by access key ID.
	List(ctx context.Context) ([]Key, error)
	// Put creates or replaces the key with k.AccessKeyID.
	Put(ctx context.Context, k Key) error
	// Delete removes a key; an unknown ID is an error of kind
	// errdefs.ErrNotFound.
	Delete(ctx context.Context, accessKeyID string) error
}

// StaticKeyring is a Keyring in memory.
type StaticKeyring struct {
	mu   sync.RWMutex
	keys map[string]Key
}

// NewStaticKeyring returns a Keyring in memory holding keys.
func NewStaticKeyring(keys ...Key) *StaticKeyring {
	r := &StaticKeyring{keys: make(map[string]Key, len(keys))}
	for _, k := range keys {
		r.keys[k.AccessKeyID] = k
	}
	return r
}

// Lookup implements Keyring.
func (r *StaticKeyring) Lookup(_ context.Context, id string) (Key, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	k, ok := r.keys[id]
	if !ok {
		return Key{}, errdefs.NotFound("unknown access key ID %s", id)
	}
	return k, nil
}

// List implements Keyring.
func (r *StaticKeyring) List(context.Context) ([]Key, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Key, 0, len(r.keys))
	for _, k := range r.keys {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AccessKeyID < out[j].AccessKeyID })
	return out, nil
}

// Put implements Keyring.
func (r *StaticKeyring) Put(_ context.Context, k Key) error {
	if err := validateKeys([]Key{k}); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys[k.AccessKeyID] = k
	return nil
}

// Delete implements Keyring.
func (r *StaticKeyring) Delete(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.keys[id]; !ok {
		return errdefs.NotFound("unknown access key ID %s", id)
	}
	delete(r.keys, id)
	return nil
}

// Allows reports whether key k's policy allows action, an action name such
// as "ecs:RunTask", "eks:CreateFargateProfile" or "vessel:GetTaskLogs". A
// host key's restriction to its own host is the caller's to check (with
// Key.HostID); Allows only says which actions a host key may call at all:
// those starting with "vessel-agent:".
func (k Key) Allows(action string) bool {
	switch k.Policy {
	case "", PolicyAdmin:
		return true
	case PolicyOperator:
		return !matchAny(operatorDenied, action) && !matchAny(hostActions, action)
	case PolicyReadOnly:
		return matchAny(readOnlyAllowed, action)
	case PolicyCustom:
		return !matchAny(hostActions, action) && matchAny(k.Allow, action)
	case PolicyHost:
		return matchAny(hostActions, action)
	}
	return false
}

// Services are the services actions name, before the colon, that a
// custom policy may list: "vessel-agent" is for host keys alone.
var Services = []string{"ecs", "eks", "vessel", "secretsmanager", "ssm", "logs"}

var (
	actionRE  = regexp.MustCompile(`^([a-z0-9-]+):([A-Za-z*]+)$`)
	keyNameRE = regexp.MustCompile(`^[A-Za-z0-9+=,.@_-]{1,64}$`)
)

// ValidateAllow checks the actions of a custom policy: each
// "service:Action" or a pattern with * ("ecs:Describe*"), with service one
// of Services. Errors are of kind errdefs.ErrInvalidArgument.
func ValidateAllow(allow []string) error {
	if len(allow) == 0 {
		return errdefs.InvalidArgument("a custom policy needs at least one action to allow, e.g. ecs:RunTask,ecs:DescribeTasks")
	}
	for _, a := range allow {
		m := actionRE.FindStringSubmatch(a)
		if m == nil {
			return errdefs.InvalidArgument("action %q is not of the form service:Action (letters, * as a wildcard), e.g. ecs:RunTask or ecs:Describe*", a)
		}
		if !slices.Contains(Services, m[1]) {
			return errdefs.InvalidArgument("action %q names service %q; accepted services: %s", a, m[1], strings.Join(Services, ", "))
		}
	}
	return nil
}

// ValidateKeyName checks a key's name as IAM checks a user name: 1 to 64
// letters, digits and +=,.@_- (host keys, named "host/<id>", are made by
// the control plane, not through this check).
func ValidateKeyName(name string) error {
	if !keyNameRE.MatchString(name) {
		return errdefs.InvalidArgument("key name %q is not valid: use 1 to 64 letters, digits and +=,.@_-", name)
	}
	return nil
}

var (
	operatorDenied  = []string{"vessel:*Credential*", "vessel:*JoinToken*", "vessel:RevokeHost", "vessel:RemoveHost"}
	readOnlyAllowed = []string{"ecs:Describe*", "ecs:List*", "eks:Describe*", "eks:List*", "vessel:Describe*", "vessel:List*", "vessel:Get*",
		// Secrets' metadata, never their values (GetSecretValue, GetParameter*).
		"secretsmanager:Describe*", "secretsmanager:List*", "ssm:Describe*",
		// Logs are read as ECS's read-only policies read them.
		"logs:Describe*", "logs:Get*", "logs:Filter*"}
	hostActions = []string{"vessel-agent:*"}
)

func matchAny(patterns []string, action string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool {
		ok, err := path.Match(p, action)
		return err == nil && ok
	})
}

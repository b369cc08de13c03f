package server

import (
	"context"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
)

// Key management: Vessel's own JSON routes under /vessel/v1/credentials
// (actions vessel:CreateCredential, ListCredentials, RotateCredential,
// DeleteCredential), over the Keyring the verifier reads.

func (s *Server) routeCredentials(mux *http.ServeMux) {
	mux.HandleFunc("POST /vessel/v1/credentials", func(w http.ResponseWriter, r *http.Request) {
		s.metrics.setOperation(r, "vessel:CreateCredential")
		var in agentproto.CreateCredentialRequest
		if !decodeAgent(w, r, &in) {
			return
		}
		k, err := s.CreateCredential(r.Context(), in.Name, in.Policy, in.Allow)
		writeAgent(w, credentialOf(k, true), err)
	})
	mux.HandleFunc("GET /vessel/v1/credentials", func(w http.ResponseWriter, r *http.Request) {
		s.metrics.setOperation(r, "vessel:ListCredentials")
		keys, err := s.ListCredentials(r.Context())
		out := agentproto.CredentialList{Credentials: make([]agentproto.Credential, 0, len(keys))}
		for _, k := range keys {
			out.Credentials = append(out.Credentials, credentialOf(k, false))
		}
		writeAgent(w, out, err)
	})
	mux.HandleFunc("POST /vessel/v1/credentials/{key}/rotate", func(w http.ResponseWriter, r *http.Request) {
		s.metrics.setOperation(r, "vessel:RotateCredential")
		k, err := s.RotateCredential(r.Context(), r.PathValue("key"))
		writeAgent(w, credentialOf(k, true), err)
	})
	mux.HandleFunc("DELETE /vessel/v1/credentials/{key}", func(w http.ResponseWriter, r *http.Request) {
		s.metrics.setOperation(r, "vessel:DeleteCredential")
		writeAgent(w, struct{}{}, s.DeleteCredential(r.Context(), r.PathValue("key")))
	})
}

func credentialOf(k auth.Key, withSecret bool) agentproto.Credential {
	c := agentproto.Credential{AccessKeyID: k.AccessKeyID, Name: k.Name, Policy: k.Policy, Allow: k.Allow,
		HostID: k.HostID, CreatedAt: k.CreatedAt}
	if c.Policy == "" {
		c.Policy = auth.PolicyAdmin
	}
	if withSecret {
		c.SecretAccessKey = k.SecretAccessKey
	}
	return c
}

// creatablePolicies are the policies a key may be created with here; host
// keys are made when a host joins.
var creatablePolicies = []string{auth.PolicyAdmin, auth.PolicyOperator, auth.PolicyReadOnly, auth.PolicyCustom}

// CreateCredential makes a key named name with policy (admin, operator,
// read-only; "" is read-only, or custom when allow is given) and returns
// it with its secret, which is shown only here.
func (s *Server) CreateCredential(ctx context.Context, name, policy string, allow []string) (auth.Key, error) {
	if err := auth.ValidateKeyName(name); err != nil {
		return auth.Key{}, err
	}
	if policy == "" {
		policy = auth.PolicyReadOnly
		if len(allow) > 0 {
			policy = auth.PolicyCustom
		}
	}
	if !slices.Contains(creatablePolicies, policy) {
		return auth.Key{}, errdefs.InvalidArgument("policy %q is not known: accepted policies are %s, or a list of actions to allow (a custom policy); host keys are made when a host joins",
			policy, strings.Join(creatablePolicies[:3], ", "))
	}
	if policy == auth.PolicyCustom {
		if err := s.validateAllow(allow); err != nil {
			return auth.Key{}, err
		}
	} else if len(allow) > 0 {
		return auth.Key{}, errdefs.InvalidArgument("a list of actions to allow makes a custom policy: give either policy %q or actions, not both", policy)
	}
	s.credMu.Lock()
	defer s.credMu.Unlock()
	keys, err := s.keyring.List(ctx)
	if err != nil {
		return auth.Key{}, err
	}
	if i := slices.IndexFunc(keys, func(k auth.Key) bool { return k.Name == name }); i >= 0 {
		return auth.Key{}, errdefs.AlreadyExists("a key named %s already exists (%s): choose another name, or rotate that key", name, keys[i].AccessKeyID)
	}
	k, err := auth.NewKey()
	if err != nil {
		return auth.Key{}, err
	}
	k.Name, k.Policy, k.CreatedAt = name, policy, s.cfg.Now().UTC().Truncate(time.Second)
	if policy == auth.PolicyCustom {
		k.Allow = slices.Clone(allow)
	}
	if err := s.keyring.Put(ctx, k); err != nil {
		return auth.Key{}, err
	}
	s.log.Info("access key created", "access_key_id", k.AccessKeyID, "name", k.Name, "policy", k.Policy, "allow", k.Allow, "by", callerOf(ctx))
	return k, nil
}

// validateAllow checks a custom policy's actions: their form, and that
// each names at least one action Vessel serves.
func (s *Server) validateAllow(allow []string) error {
	if err := auth.ValidateAllow(allow); err != nil {
		return err
	}
	known := s.knownActions()
	for _, a := range allow {
		if !slices.ContainsFunc(known, func(k string) bool { ok, _ := path.Match(a, k); return ok }) {
			service, _, _ := strings.Cut(a, ":")
			var same []string
			for _, k := range known {
				if strings.HasPrefix(k, service+":") {
					same = append(same, strings.TrimPrefix(k, service+":"))
				}
			}
			return errdefs.InvalidArgument("action %q matches no action Vessel serves; %s actions: %s", a, service, strings.Join(same, ", "))
		}
	}
	return nil
}

// ListCredentials returns every key, secrets removed.
func (s *Server) ListCredentials(ctx context.Context) ([]auth.Key, error) {
	keys, err := s.keyring.List(ctx)
	for i := range keys {
		keys[i].SecretAccessKey = ""
	}
	return keys, err
}

// findKey returns the key with access key ID or name idOrName.
func (s *Server) findKey(ctx context.Context, idOrName string) (auth.Key, []auth.Key, error) {
	keys, err := s.keyring.List(ctx)
	if err != nil {
		return auth.Key{}, nil, err
	}
	for _, k := range keys {
		if k.AccessKeyID == idOrName || k.Name == idOrName {
			return k, keys, nil
		}
	}
	return auth.Key{}, keys, errdefs.NotFound("no access key has the ID or name %q (`vessel credentials list` shows them)", idOrName)
}

// RotateCredential gives a key a new secret, keeping its ID, name and
// policy, and returns it with the secret. The old secret stops verifying
// before RotateCredential returns (on this control plane; on others when
// their keyring's watch delivers the change).
func (s *Server) RotateCredential(ctx context.Context, idOrName string) (auth.Key, error) {
	s.credMu.Lock()
	defer s.credMu.Unlock()
	k, _, err := s.findKey(ctx, idOrName)
	if err != nil {
		return auth.Key{}, err
	}
	fresh, err := auth.NewKey()
	if err != nil {
		return auth.Key{}, err
	}
	k.SecretAccessKey = fresh.SecretAccessKey
	if err := s.keyring.Put(ctx, k); err != nil {
		return auth.Key{}, err
	}
	s.log.Info("access key rotated", "access_key_id", k.AccessKeyID, "name", k.Name, "by", callerOf(ctx))
	return k, nil
}

// DeleteCredential deletes a key; it stops verifying before
// DeleteCredential returns. The last admin key cannot be deleted.
func (s *Server) DeleteCredential(ctx context.Context, idOrName string) error {
	s.credMu.Lock()
	defer s.credMu.Unlock()
	k, keys, err := s.findKey(ctx, idOrName)
	if err != nil {
		return err
	}
	isAdmin := func(k auth.Key) bool { return k.Policy == "" || k.Policy == auth.PolicyAdmin }
	if isAdmin(k) {
		others := slices.ContainsFunc(keys, func(o auth.Key) bool { return isAdmin(o) && o.AccessKeyID != k.AccessKeyID })
		if !others {
			return errdefs.Conflict("%s (%s) is the last admin key and cannot be deleted: create another first with `vessel credentials create NAME --policy admin`", k.AccessKeyID, k.Name)
		}
	}
	if err := s.keyring.Delete(ctx, k.AccessKeyID); err != nil {
		return err
	}
	s.log.Info("access key deleted", "access_key_id", k.AccessKeyID, "name", k.Name, "by", callerOf(ctx))
	return nil
}

// callerOf names the key that signed the request in ctx, for the log.
func callerOf(ctx context.Context) string {
	id, ok := auth.IdentityFrom(ctx)
	if !ok {
		return "(in process)"
	}
	if id.Key.Name != "" {
		return id.Key.Name
	}
	return id.AccessKeyID
}

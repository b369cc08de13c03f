package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
)

// Hosts join with a join token, as kubeadm's nodes do: `vessel host token
// create` stores the token's ID, the SHA-256 of its secret and its expiry;
// `vessel agent --token ID.SECRET` presents it once on POST
// /agent/v1/join and receives a credential bound to its host ID (a
// PolicyHost key in the keyring) and the control plane's CA bundle.
// `vessel host revoke` deletes the credential and marks the host ID so
// that no older credential or admin key registers it again; a new join
// lifts the mark.

const (
	prefixJoinTokens   = "jointokens/"   // jointokens/<id>
	prefixRevokedHosts = "revokedhosts/" // revokedhosts/<host id>

	// DefaultJoinTokenTTL is how long a join token is valid when its
	// creator names no TTL; MaxJoinTokenTTL is the longest accepted.
	DefaultJoinTokenTTL = 24 * time.Hour
	MaxJoinTokenTTL     = 365 * 24 * time.Hour
)

// Join token IDs and secrets have kubeadm's form: [a-z0-9]{6}.[a-z0-9]{16}.
var (
	joinTokenRE = regexp.MustCompile(`^([a-z0-9]{6})\.([a-z0-9]{16})$`)
	hostIDRE    = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$`)
)

// JoinToken is a stored join token, its secret only as a hash.
type JoinToken struct {
	ID          string    `json:"id"`
	SecretHash  string    `json:"secretHash,omitempty"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	Expires     time.Time `json:"expires"`
}

// revokedHost marks a host ID whose credential was revoked.
type revokedHost struct {
	HostID    string    `json:"hostId"`
	RevokedAt time.Time `json:"revokedAt"`
}

// JoinRequest and JoinResponse are the join route's wire types.
type (
	JoinRequest  = agentproto.JoinRequest
	JoinResponse = agentproto.JoinResponse
)

// CreatedJoinToken is the answer to CreateJoinToken: the token in full,
// shown once.
type CreatedJoinToken struct {
	JoinToken
	Token string `json:"token"`
	// CACertHash pins the control plane's CA ("sha256:<hex of its
	// SubjectPublicKeyInfo>"); empty without TLS.
	CACertHash string `json:"caCertHash,omitempty"`
}

// SetTLS tells the control plane the CA its API's certificate chains to
// (PEM) and that CA's SubjectPublicKeyInfo hash: what joining hosts
// receive and pin. Call it before serving; nil when the API speaks plain
// HTTP.
func (s *Server) SetTLS(caPEM []byte, caHash string) {
	s.caPEM, s.caHash = caPEM, caHash
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// CreateJoinToken stores a new join token valid for ttl (DefaultJoinTokenTTL
// when 0) and returns it with its secret, which is not kept.
func (s *Server) CreateJoinToken(ctx context.Context, ttl time.Duration, description string) (CreatedJoinToken, error) {
	if ttl == 0 {
		ttl = DefaultJoinTokenTTL
	}
	if ttl < time.Minute || ttl > MaxJoinTokenTTL {
		return CreatedJoinToken{}, errdefs.InvalidArgument("join token TTL %s is out of range: give a duration from 1m to %s, e.g. 24h", ttl, MaxJoinTokenTTL)
	}
	now := s.cfg.Now()
	id, secret := newToken(6), newToken(16)
	t := JoinToken{ID: id, SecretHash: hashSecret(secret), Description: description, CreatedAt: now, Expires: now.Add(ttl)}
	if _, err := putJSON(ctx, s.store, prefixJoinTokens+id, t, 0); err != nil {
		return CreatedJoinToken{}, err
	}
	t.SecretHash = ""
	s.log.Info("join token created", "token_id", id, "expires", t.Expires)
	return CreatedJoinToken{JoinToken: t, Token: id + "." + secret, CACertHash: s.caHash}, nil
}

// JoinTokens lists the join tokens, without their secrets, expired ones
// included (they are removed by DeleteJoinToken, or refused when used).
func (s *Server) JoinTokens(ctx context.Context) ([]JoinToken, error) {
	ts, _, _, err := listJSON[JoinToken](ctx, s.store, prefixJoinTokens)
	for i := range ts {
		ts[i].SecretHash = ""
	}
	return ts, err
}

// DeleteJoinToken removes a join token: hosts can no longer join with it.
// Hosts that joined keep their credentials.
func (s *Server) DeleteJoinToken(ctx context.Context, id string) error {
	if id, _, ok := strings.Cut(id, "."); ok {
		return s.DeleteJoinToken(ctx, id)
	}
	err := s.store.Delete(ctx, prefixJoinTokens+id, store.AnyRevision)
	if errdefs.IsNotFound(err) {
		return errdefs.NotFound("join token %s does not exist (vessel host token list shows the tokens)", id)
	}
	return err
}

// hostCredential returns the key bound to hostID, if any.
func (s *Server) hostCredential(ctx context.Context, hostID string) (auth.Key, bool, error) {
	keys, err := s.keyring.List(ctx)
	if err != nil {
		return auth.Key{}, false, err
	}
	for _, k := range keys {
		if k.Policy == auth.PolicyHost && k.HostID == hostID {
			return k, true, nil
		}
	}
	return auth.Key{}, false, nil
}

// Join checks a join token and gives host req.HostID its credential. An
// unknown, deleted or expired token, or a wrong secret, is refused with
// ErrAccessDenied; a host ID that already has a credential with
// errdefs.ErrAlreadyExists (revoke it first).
func (s *Server) Join(ctx context.Context, req JoinRequest) (JoinResponse, error) {
	m := joinTokenRE.FindStringSubmatch(req.Token)
	if m == nil {
		return JoinResponse{}, errdefs.InvalidArgument("join token %q is not of the form ID.SECRET ([a-z0-9]{6}.[a-z0-9]{16}); `vessel host token create` makes one", redactToken(req.Token))
	}
	if !hostIDRE.MatchString(req.HostID) {
		return JoinResponse{}, errdefs.InvalidArgument("host ID %q is not accepted: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", req.HostID)
	}
	var t JoinToken
	_, err := getJSON(ctx, s.store, prefixJoinTokens+m[1], &t)
	if errdefs.IsNotFound(err) {
		return JoinResponse{}, fmt.Errorf("join token %s is unknown or was deleted: create one with `vessel host token create`: %w", m[1], agentproto.ErrAccessDenied)
	}
	if err != nil {
		return JoinResponse{}, err
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(m[2])), []byte(t.SecretHash)) != 1 {
		return JoinResponse{}, fmt.Errorf("join token %s: the secret is wrong: %w", m[1], agentproto.ErrAccessDenied)
	}
	now := s.cfg.Now()
	if !now.Before(t.Expires) {
		return JoinResponse{}, fmt.Errorf("join token %s expired at %s: create a new one with `vessel host token create`: %w", m[1], t.Expires.UTC().Format(time.RFC3339), agentproto.ErrAccessDenied)
	}
	if _, ok, err := s.hostCredential(ctx, req.HostID); err != nil {
		return JoinResponse{}, err
	} else if ok {
		return JoinResponse{}, errdefs.AlreadyExists("host %s already has a credential: revoke it first (vessel host revoke %s), or join with another host ID", req.HostID, req.HostID)
	}
	k, err := auth.NewKey()
	if err != nil {
		return JoinResponse{}, err
	}
	k.Name, k.Policy, k.HostID, k.CreatedAt = "host/"+req.HostID, auth.PolicyHost, req.HostID, now
	if err := s.keyring.Put(ctx, k); err != nil {
		return JoinResponse{}, err
	}
	if err := s.store.Delete(ctx, prefixRevokedHosts+req.HostID, store.AnyRevision); err != nil && !errdefs.IsNotFound(err) {
		return JoinResponse{}, err
	}
	s.log.Info("host joined", "host", req.HostID, "token_id", t.ID, "access_key_id", k.AccessKeyID)
	return JoinResponse{HostID: req.HostID, AccessKeyID: k.AccessKeyID, SecretAccessKey: k.SecretAccessKey, CABundle: string(s.caPEM)}, nil
}

func redactToken(tok string) string {
	if id, _, ok := strings.Cut(tok, "."); ok {
		return id + ".<secret>"
	}
	if len(tok) > 6 {
		return tok[:6] + "..."
	}
	return tok
}

// RevokeHost cuts host id off: its credential is deleted (its next call is
// refused as UnrecognizedClient), its registration removed (its tasks are
// stopped as those of a lost host), and its ID marked so that it cannot
// register again until it joins with a new token.
func (s *Server) RevokeHost(ctx context.Context, id string) error {
	k, hasKey, err := s.hostCredential(ctx, id)
	if err != nil {
		return err
	}
	_, regErr := s.store.Get(ctx, hostKey(id))
	if !hasKey && errdefs.IsNotFound(regErr) {
		return errdefs.NotFound("host %s has neither a credential nor a registration", id)
	}
	if _, err := putJSON(ctx, s.store, prefixRevokedHosts+id, revokedHost{HostID: id, RevokedAt: s.cfg.Now()}, store.AnyRevision); err != nil {
		return err
	}
	if hasKey {
		if err := s.keyring.Delete(ctx, k.AccessKeyID); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	if err := s.store.Delete(ctx, hostKey(id), store.AnyRevision); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if err := s.store.Delete(ctx, prefixHeartbeats+id, store.AnyRevision); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	s.hbMu.Lock()
	delete(s.heartbeats, id)
	delete(s.hbStored, id)
	s.hbMu.Unlock()
	s.log.Warn("host revoked", "host", id)
	s.notify()
	return nil
}

// isRevoked reports whether host id was revoked and has not joined since.
func (s *Server) isRevoked(ctx context.Context, id string) (bool, error) {
	_, err := s.store.Get(ctx, prefixRevokedHosts+id)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// Routes: the join route is not SigV4-signed (the token is the proof);
// the others are, and only admin keys may call them.

func (s *Server) routeJoin(mux *http.ServeMux) {
	mux.HandleFunc("GET "+agentproto.CAPath, func(w http.ResponseWriter, r *http.Request) {
		if len(s.caPEM) == 0 {
			writeAgent(w, nil, errdefs.NotFound("this control plane speaks plain HTTP: it has no CA"))
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(s.caPEM)
	})
	mux.HandleFunc("POST "+agentproto.JoinPath, func(w http.ResponseWriter, r *http.Request) {
		s.metrics.setOperation(r, "vessel-agent:Join")
		var req JoinRequest
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err == nil {
			err = json.Unmarshal(body, &req)
		}
		if err != nil {
			writeAgent(w, nil, errdefs.InvalidArgument("bad join request: %v; expected {\"token\": \"ID.SECRET\", \"hostId\": \"...\"}", err))
			return
		}
		resp, err := s.Join(r.Context(), req)
		if err != nil {
			s.log.Warn("join refused", "host", req.HostID, "err", err)
		}
		writeAgent(w, resp, err)
	})
}

func (s *Server) routeHostAdmin(mux *http.ServeMux) {
	// authorize (routeActions) has let the request through; name its
	// operation for the metrics.
	op := func(r *http.Request, action string) { s.metrics.setOperation(r, action) }
	mux.HandleFunc("POST /vessel/v1/join-tokens", func(w http.ResponseWriter, r *http.Request) {
		op(r, "vessel:CreateJoinToken")
		var in struct {
			TTL         string `json:"ttl"`
			Description string `json:"description"`
		}
		if !decodeAgent(w, r, &in) {
			return
		}
		var ttl time.Duration
		if in.TTL != "" {
			d, err := time.ParseDuration(in.TTL)
			if err != nil {
				writeAgent(w, nil, errdefs.InvalidArgument("ttl %q is not a duration such as 24h or 30m", in.TTL))
				return
			}
			ttl = d
		}
		out, err := s.CreateJoinToken(r.Context(), ttl, in.Description)
		writeAgent(w, out, err)
	})
	mux.HandleFunc("GET /vessel/v1/join-tokens", func(w http.ResponseWriter, r *http.Request) {
		op(r, "vessel:ListJoinTokens")
		ts, err := s.JoinTokens(r.Context())
		writeAgent(w, map[string]any{"joinTokens": ts}, err)
	})
	mux.HandleFunc("DELETE /vessel/v1/join-tokens/{id}", func(w http.ResponseWriter, r *http.Request) {
		op(r, "vessel:DeleteJoinToken")
		writeAgent(w, nil, s.DeleteJoinToken(r.Context(), r.PathValue("id")))
	})
	mux.HandleFunc("POST /vessel/v1/hosts/{id}/revoke", func(w http.ResponseWriter, r *http.Request) {
		op(r, "vessel:RevokeHost")
		writeAgent(w, nil, s.RevokeHost(r.Context(), r.PathValue("id")))
	})
}

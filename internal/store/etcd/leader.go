package etcd

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
)

// DefaultLeaderLease is the time-to-live of a leader's session: a leader
// that stops renewing it (dead, paused, cut off) is succeeded this long
// after its last renewal at the latest.
const DefaultLeaderLease = 10 * time.Second

// leaderKey is where, under the store's prefix, the replicas campaign:
// each candidate's key is "<prefix>leader/<lease ID>".
const leaderKey = "leader"

// ElectorConfig configures leader election among the replicas on one
// store.
type ElectorConfig struct {
	// Lease is the TTL of each candidate's session, rounded up to whole
	// seconds. Default DefaultLeaderLease.
	Lease time.Duration
	// Name is this replica's value under the election key, for humans;
	// default the host name and process ID.
	Name string
	// Logger receives leadership changes. Default: the store's.
	Logger *slog.Logger
}

// Elector elects one leader among the replicas that share a store's etcd
// and prefix, through etcd's concurrency package: each candidate holds a
// session on a lease, and the oldest key under "<prefix>leader/" leads.
type Elector struct {
	s    *Store
	ttl  int
	name string
	log  *slog.Logger
}

// NewElector returns an elector on s's cluster and prefix.
func (s *Store) NewElector(cfg ElectorConfig) (*Elector, error) {
	if cfg.Lease < 0 {
		return nil, errdefs.InvalidArgument("leader lease %v: give 0 for the default %v or a positive duration such as 10s", cfg.Lease, DefaultLeaderLease)
	}
	if cfg.Lease == 0 {
		cfg.Lease = DefaultLeaderLease
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		cfg.Name = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	if cfg.Logger == nil {
		cfg.Logger = s.log
	}
	ttl := int(math.Ceil(cfg.Lease.Seconds()))
	return &Elector{s: s, ttl: max(1, ttl), name: cfg.Name, log: cfg.Logger}, nil
}

// Key is the election's prefix in etcd; the candidates' keys are under
// Key()+"/".
func (e *Elector) Key() string { return e.s.prefix + leaderKey }

// Lead campaigns until ctx is done. For each term of leadership it calls
// term with a context that ends when the term does (the session's lease
// was lost or ctx is done) and that fences every Put and Delete made with
// it by the leader's election key (store.WithFence): once a successor may
// lead, such writes are refused with store.ErrFenced. After a term it
// resigns and campaigns again. It returns nil when ctx is done.
func (e *Elector) Lead(ctx context.Context, term func(ctx context.Context)) error {
	for ctx.Err() == nil {
		if err := e.campaign(ctx, term); err != nil && ctx.Err() == nil {
			e.log.Warn("leader election: campaign failed; trying again", "err", err)
			sleep(ctx, time.Second)
		}
	}
	return nil
}

func (e *Elector) campaign(ctx context.Context, term func(ctx context.Context)) error {
	sess, err := concurrency.NewSession(e.s.cli, concurrency.WithTTL(e.ttl), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	defer sess.Close()
	el := concurrency.NewElection(sess, e.Key())
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { // a session lost while campaigning ends the campaign
		select {
		case <-sess.Done():
		case <-cctx.Done():
		}
		stop()
	}()
	if err := el.Campaign(cctx, e.name); err != nil {
		return err
	}
	fence := store.Fence{Key: el.Key(), Revision: el.Rev()}
	e.log.Info("leader elected: this replica runs the controllers", "key", fence.Key, "revision", fence.Revision, "lease_ttl_seconds", e.ttl)
	term(store.WithFence(cctx, fence))
	e.log.Info("leadership ended: this replica stops its controllers and campaigns again", "key", fence.Key)
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	el.Resign(clientv3.WithRequireLeader(rctx))
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

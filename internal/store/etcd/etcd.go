package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
)

// Defaults for Config.
const (
	DefaultPrefix         = "/vessel/"
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 5 * time.Second
	// listPage is how many keys one range request of List asks for.
	listPage = 500
)

// Config says which etcd cluster the store lives in and where in it.
type Config struct {
	// Endpoints are the client URLs of the etcd members, e.g.
	// "https://10.0.0.1:2379". At least one is required; give them all, so
	// that the client moves to another member when one stops answering.
	Endpoints []string
	// Prefix is put before every key, so that several installations can
	// share one etcd. It must end with "/" and must not be a prefix of
	// another installation's. Default DefaultPrefix.
	Prefix string
	// TLS, if set, is the client's TLS configuration (see TLSConfig).
	TLS *tls.Config
	// DialTimeout bounds the first connection in Open. Default
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// RequestTimeout bounds every request to etcd (one page of a List), so
	// that a cluster without quorum gives an error rather than a hang.
	// Default DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Logger receives why a watch was ended. Default: slog.Default().
	Logger *slog.Logger
}

// Store is the etcd back end of store.Store. Create it with Open.
type Store struct {
	cli     *clientv3.Client
	prefix  string
	name    string // for messages: "etcd store at <endpoints> under <prefix>"
	timeout time.Duration
	log     *slog.Logger
	// reads and writes commit concurrent requests together (batch.go).
	reads, writes batcher

	closeOnce sync.Once
	mu        sync.RWMutex // guards closed
	closed    bool
	closing   chan struct{} // closed by Close; ends the watches
}

var _ store.Store = (*Store)(nil)

// TLSConfig builds a client TLS configuration from PEM files: caFile, the
// CA bundle that signed the etcd members' certificates (empty: the
// system's), and certFile and keyFile, the client certificate and its key
// (both or neither).
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errdefs.InvalidArgument("etcd client certificate %q and key %q: give both or neither", certFile, keyFile)
	}
	info := transport.TLSInfo{CertFile: certFile, KeyFile: keyFile, TrustedCAFile: caFile}
	cfg, err := info.ClientConfig()
	if err != nil {
		return nil, errdefs.InvalidArgument("etcd TLS files (CA %q, certificate %q, key %q): %v", caFile, certFile, keyFile, err)
	}
	return cfg, nil
}

// Open connects to the etcd cluster of cfg.Endpoints and checks that it
// answers within cfg.DialTimeout. It fails with an error of kind
// errdefs.ErrInvalidArgument if cfg is incomplete or wrong, and of kind
// errdefs.ErrUnavailable if no member answers. It does not change anything
// in etcd.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errdefs.InvalidArgument("etcd store: no endpoints; give the client URLs of the etcd members, e.g. https://10.0.0.1:2379")
	}
	for _, e := range cfg.Endpoints {
		if strings.TrimSpace(e) == "" {
			return nil, errdefs.InvalidArgument("etcd store: endpoints %q contain an empty one; give client URLs such as https://10.0.0.1:2379", cfg.Endpoints)
		}
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(cfg.Prefix, "/") || !utf8.ValidString(cfg.Prefix) {
		return nil, errdefs.InvalidArgument("etcd store: prefix %q must be UTF-8 and end with \"/\" (so that it is no prefix of another installation's), e.g. %q", cfg.Prefix, DefaultPrefix)
	}
	if cfg.DialTimeout < 0 || cfg.RequestTimeout < 0 {
		return nil, errdefs.InvalidArgument("etcd store: dial timeout %v and request timeout %v: give 0 for the defaults (%v, %v) or positive durations", cfg.DialTimeout, cfg.RequestTimeout, DefaultDialTimeout, DefaultRequestTimeout)
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	name := fmt.Sprintf("etcd store at %s under %s", strings.Join(cfg.Endpoints, ","), cfg.Prefix)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		TLS:         cfg.TLS,
		DialTimeout: cfg.DialTimeout,
		// Keepalives notice a member that stopped answering without closing
		// its connections, so that the client moves to another.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		// The client's retries and reconnections are expected, and every
		// error that reaches a caller is returned to it.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, errdefs.Unavailable("%s: %v", name, err)
	}
	s := &Store{
		cli:     cli,
		prefix:  cfg.Prefix,
		name:    name,
		timeout: cfg.RequestTimeout,
		log:     cfg.Logger.With("store", name),
		closing: make(chan struct{}),
	}
	s.reads.s, s.writes.s = s, s
	cctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(cctx, s.prefix, clientv3.WithCountOnly()); err != nil {
		cli.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", name, ctx.Err())
		}
		return nil, errdefs.Unavailable("%s: no member answered within %v: %v (check the URLs, TLS files, and that a quorum of the members is up)", name, cfg.DialTimeout, err)
	}
	return s, nil
}

// Name says which cluster and prefix the store is, for messages.
func (s *Store) Name() string { return s.name }

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := s.beginKey(ctx, key); err != nil {
		return store.KV{}, err
	}
	r := s.getRequest(ctx, key)
	return s.getOutcome(r, s.reads.do(r))
}

func (s *Store) getRequest(ctx context.Context, key string) *request {
	k := s.prefix + key
	return &request{ctx: ctx, name: key, key: k, then: clientv3.OpGet(k), size: len(k)}
}

func (s *Store) getOutcome(r *request, o outcome) (store.KV, error) {
	if o.err != nil {
		return store.KV{}, s.fail(r.ctx, "get", r.name, o.err)
	}
	kvs := o.responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return store.KV{}, errdefs.NotFound("key %q not found", r.name)
	}
	return s.kv(kvs[0].Key, kvs[0].Value, kvs[0].ModRevision), nil
}

// List implements store.Store. It reads the prefix in pages, all at the
// revision of the first, so that the listing is one consistent snapshot
// however long it is.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	if err := s.begin(ctx); err != nil {
		return nil, 0, err
	}
	for {
		kvs, rev, err := s.list(ctx, prefix)
		if errors.Is(err, rpctypes.ErrCompacted) {
			continue // compacted between two pages: read again at a newer revision
		}
		if err != nil {
			return nil, 0, s.fail(ctx, "list", prefix, err)
		}
		return kvs, rev, nil
	}
}

func (s *Store) list(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	start := s.prefix + prefix
	end := clientv3.GetPrefixRangeEnd(start)
	kvs := []store.KV{}
	var rev int64
	for from := start; ; {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		o := s.reads.do(&request{ctx: ctx, name: prefix, key: from, then: clientv3.OpGet(from, opts...), size: len(from) + len(end)})
		if o.err != nil {
			return nil, 0, o.err
		}
		resp := o.responses[0].GetResponseRange()
		if rev == 0 {
			rev = o.rev
		}
		for _, kv := range resp.Kvs {
			kvs = append(kvs, s.kv(kv.Key, kv.Value, kv.ModRevision))
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return kvs, rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Put implements store.Store. It returns once a quorum of the members has
// the change.
func (s *Store) Put(ctx context.Context, key string, value []byte, expectedRevision int64) (int64, error) {
	if err := s.beginKey(ctx, key); err != nil {
		return 0, err
	}
	if err := store.CheckExpectedRevision(expectedRevision); err != nil {
		return 0, err
	}
	r := s.writeRequest(ctx, key, expectedRevision, true)
	r.then = clientv3.OpPut(r.key, string(value)) // string() copies value
	r.size += len(value)
	return s.putOutcome(r, s.writes.do(r))
}

// writeRequest is a Put's or Delete's request for key, but for its
// operation: compared with expectedRevision, and with ctx's fence.
// MustNotExist compares the key's create revision with 0 if create (Put),
// and nothing else (Delete, as AnyRevision).
func (s *Store) writeRequest(ctx context.Context, key string, expectedRevision int64, create bool) *request {
	k := s.prefix + key
	r := &request{ctx: ctx, name: key, key: k, write: true, expected: expectedRevision, size: len(k)}
	r.fence, r.fenced = store.FenceFrom(ctx)
	switch {
	case expectedRevision == store.AnyRevision:
	case expectedRevision == store.MustNotExist:
		if create {
			r.cmps = append(r.cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		}
	default:
		r.cmps = append(r.cmps, clientv3.Compare(clientv3.ModRevision(k), "=", expectedRevision))
	}
	r.cmps, r.orElse = fenceOps(r.cmps, r.fence, r.fenced, k)
	return r
}

func (s *Store) putOutcome(r *request, o outcome) (int64, error) {
	key, expectedRevision := r.name, r.expected
	if o.err != nil {
		return 0, s.fail(r.ctx, "put", key, o.err)
	}
	if o.succeeded {
		return o.rev, nil
	}
	if err := s.fencedOut(o.responses, r, "put"); err != nil {
		return 0, err
	}
	cur := o.responses[0].GetResponseRange().GetKvs()
	switch {
	case expectedRevision == store.MustNotExist:
		var at int64
		if len(cur) > 0 {
			at = cur[0].ModRevision
		}
		return 0, errdefs.AlreadyExists("key %q already exists at revision %d; put with its revision to update it", key, at)
	case len(cur) == 0:
		return 0, errdefs.NotFound("key %q not found; put with store.MustNotExist to create it", key)
	default:
		return 0, errdefs.Conflict("key %q is at revision %d, not the expected %d; get it again and retry", key, cur[0].ModRevision, expectedRevision)
	}
}

// fenceOps adds the comparison of a fence (if any) to cmps, and returns
// the operations of the transaction's else branch: a read of key k, and
// one of the fence's key to tell a lost fence from a failed precondition.
func fenceOps(cmps []clientv3.Cmp, fence store.Fence, fenced bool, k string) ([]clientv3.Cmp, []clientv3.Op) {
	orElse := []clientv3.Op{clientv3.OpGet(k, clientv3.WithKeysOnly())}
	if fenced {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(fence.Key), "=", fence.Revision))
		orElse = append(orElse, clientv3.OpGet(fence.Key, clientv3.WithKeysOnly()))
	}
	return cmps, orElse
}

// fencedOut returns an error of kind store.ErrFenced if r failed for its
// fence (responses are its else branch's).
func (s *Store) fencedOut(responses []*pb.ResponseOp, r *request, op string) error {
	if !r.fenced {
		return nil
	}
	fence, key := r.fence, r.name
	kvs := responses[1].GetResponseRange().GetKvs()
	if len(kvs) == 1 && kvs[0].CreateRevision == fence.Revision {
		return nil
	}
	return fmt.Errorf("%s: %s %q refused: the fence %s (created at revision %d) no longer holds, so this replica's leadership is over and another may lead; nothing was changed: %w",
		s.name, op, key, fence.Key, fence.Revision, store.ErrFenced)
}

// Delete implements store.Store. It returns once a quorum of the members
// has the change.
func (s *Store) Delete(ctx context.Context, key string, expectedRevision int64) error {
	if err := s.beginKey(ctx, key); err != nil {
		return err
	}
	if err := store.CheckExpectedRevision(expectedRevision); err != nil {
		return err
	}
	r := s.writeRequest(ctx, key, expectedRevision, false)
	r.then = clientv3.OpDelete(r.key)
	return s.deleteOutcome(r, s.writes.do(r))
}

func (s *Store) deleteOutcome(r *request, o outcome) error {
	key, expectedRevision := r.name, r.expected
	if o.err != nil {
		return s.fail(r.ctx, "delete", key, o.err)
	}
	if o.succeeded {
		if o.responses[0].GetResponseDeleteRange().GetDeleted() == 0 {
			return errdefs.NotFound("key %q not found", key)
		}
		return nil
	}
	if err := s.fencedOut(o.responses, r, "delete"); err != nil {
		return err
	}
	cur := o.responses[0].GetResponseRange().GetKvs()
	if len(cur) == 0 {
		return errdefs.NotFound("key %q not found", key)
	}
	return errdefs.Conflict("key %q is at revision %d, not the expected %d; get it again and retry", key, cur[0].ModRevision, expectedRevision)
}

// Watch implements store.Store.
//
// The watch survives the loss of the member it reads from: the client
// resumes it on another member from the revision after the last change
// sent. Its channel is closed, and the caller must List and watch again,
// when etcd cannot send every change: the changes after afterRevision have
// been compacted meanwhile, or the member has no leader (it may be cut off
// from the others). A slow reader holds up only its own watch.
func (s *Store) Watch(ctx context.Context, prefix string, afterRevision int64) (<-chan store.Event, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	if afterRevision < 0 {
		return nil, errdefs.InvalidArgument("watch after revision %d: revisions are 0 or more; use the revision returned by List", afterRevision)
	}
	// etcd says that a watch starts at a compacted revision only in its
	// first answer; a read at that revision says it at once.
	octx, cancel := s.opContext(ctx)
	_, err := s.cli.Get(octx, s.prefix, clientv3.WithRev(afterRevision+1), clientv3.WithCountOnly())
	cancel()
	switch {
	case errors.Is(err, rpctypes.ErrCompacted):
		return nil, errdefs.Conflict("watch after revision %d: etcd no longer keeps the changes up to it (compacted); list again and watch from the revision List returns", afterRevision)
	case err != nil && !errors.Is(err, rpctypes.ErrFutureRev):
		return nil, s.fail(ctx, "watch", prefix, err)
	}

	wctx, stop := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	unlink := context.AfterFunc(ctx, stop)
	wch := s.cli.Watch(wctx, s.prefix+prefix, clientv3.WithPrefix(), clientv3.WithRev(afterRevision+1))
	out := make(chan store.Event)
	go func() {
		defer close(out)
		defer unlink()
		defer stop()
		s.forward(ctx, prefix, wch, out)
	}()
	return out, nil
}

// forward turns etcd's watch responses into events on out until ctx is
// done, the store closes or etcd ends the watch.
func (s *Store) forward(ctx context.Context, prefix string, wch clientv3.WatchChan, out chan<- store.Event) {
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case resp, ok = <-wch:
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		}
		if !ok {
			return
		}
		if err := resp.Err(); err != nil {
			if ctx.Err() == nil && !s.isClosed() {
				s.log.Warn("watch ended by etcd; the watcher lists again", "prefix", prefix, "err", err, "compact_revision", resp.CompactRevision)
			}
			return
		}
		for i, e := range resp.Events {
			ev := store.Event{Type: store.EventPut, KV: s.kv(e.Kv.Key, e.Kv.Value, e.Kv.ModRevision)}
			// etcd sends the events of one revision in one response.
			ev.More = i+1 < len(resp.Events) && resp.Events[i+1].Kv.ModRevision == e.Kv.ModRevision
			if e.Type == clientv3.EventTypeDelete {
				ev.Type = store.EventDelete
				ev.KV.Value = nil
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			case <-s.closing:
				return
			}
		}
	}
}

// Close implements store.Store. It ends the watches and the connections to
// etcd; calls in flight fail with an error of kind errdefs.ErrUnavailable.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.closing)
		s.mu.Unlock()
		if cerr := s.cli.Close(); cerr != nil && !errors.Is(cerr, context.Canceled) {
			err = fmt.Errorf("%s: close: %w", s.name, cerr)
		}
	})
	return err
}

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// begin checks ctx and that the store is open.
func (s *Store) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.isClosed() {
		return errdefs.Unavailable("%s is closed", s.name)
	}
	return nil
}

// beginKey is begin and checkKey.
func (s *Store) beginKey(ctx context.Context, key string) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	return store.CheckKey(key)
}

// opContext bounds one request and has it refused at once by a member
// that knows it has no leader.
func (s *Store) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(clientv3.WithRequireLeader(ctx), s.timeout)
}

// fail turns an error of the etcd client into one of the store's kinds,
// naming the store, the operation and the key.
func (s *Store) fail(ctx context.Context, op, key string, err error) error {
	what := fmt.Sprintf("%s: %s %q", s.name, op, key)
	switch {
	case s.isClosed():
		return errdefs.Unavailable("%s is closed", s.name)
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", what, ctx.Err())
	case errors.Is(err, context.DeadlineExceeded):
		if op == "put" || op == "delete" {
			return errdefs.Unavailable("%s: no answer within %v: a quorum of the etcd members is not reachable (the change may still be made if it reached one)", what, s.timeout)
		}
		return errdefs.Unavailable("%s: no answer within %v: a quorum of the etcd members is not reachable", what, s.timeout)
	case errors.Is(err, rpctypes.ErrRequestTooLarge):
		return errdefs.InvalidArgument("%s: the value is larger than etcd accepts (its --max-request-bytes, 1.5 MiB by default)", what)
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted:
		return errdefs.Unavailable("%s: %v (is a quorum of the etcd members up and reachable?)", what, err)
	}
	if ev, ok := err.(rpctypes.EtcdError); ok {
		if ev.Code() == codes.Unavailable {
			return errdefs.Unavailable("%s: %v (is a quorum of the etcd members up and reachable?)", what, err)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// kv makes a store.KV of an etcd key and value, which belong to one
// response and are not shared.
func (s *Store) kv(key, value []byte, rev int64) store.KV {
	return store.KV{Key: strings.TrimPrefix(string(key), s.prefix), Value: value, Revision: rev}
}

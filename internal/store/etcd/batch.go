package etcd

import (
	"context"
	"errors"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"vessel.dev/vessel/internal/store"
)

// Requests made at the same time are committed together. Every etcd
// request costs the members a gRPC call and, for a write, a raft entry
// applied on each of them; a transaction of many requests costs little
// more than one. So Get, Put and Delete queue their request to a batcher
// (one for reads, one for writes), which sends whatever is queued as one
// transaction whenever fewer than batchFlows of its transactions are in
// flight: a lone caller's request goes out at once, as it would alone, and
// callers that come while the cluster is busy share the next round trip
// (group commit).
//
// A write is a nested transaction of its own (etcd 3.3 and later) with its
// own comparisons — precondition and fence — and else branch, so one
// request's failed precondition or lost fence neither fails nor changes
// another's. Writes committed together share one revision; the watch sends
// their events one after another, all but the last with store.Event.More.
// Reads (a Get, a page of a List) batched together form a read-only
// transaction, which is as linearizable as a single range request; a read
// alone is a range request, and reads whose transaction failed are tried
// again alone (etcd's client moves a range request, not a transaction, to
// another member).
const (
	// batchOps bounds a transaction's requests: etcd refuses more than its
	// --max-txn-ops (128 by default) in one.
	batchOps = 64
	// batchBytes bounds a transaction's keys and values: etcd refuses a
	// request over its --max-request-bytes (1.5 MiB by default). A larger
	// request goes alone.
	batchBytes = 512 << 10
	// batchFlows is how many transactions of one batcher may be in flight.
	batchFlows = 1
)

// request is one Get, Put or Delete waiting to be committed.
type request struct {
	ctx    context.Context
	name   string // the store's key
	key    string // the etcd key it reads or changes
	write  bool
	cmps   []clientv3.Cmp
	then   clientv3.Op
	orElse []clientv3.Op
	size   int
	done   chan outcome
	// expires is when its caller stops waiting: the store's request
	// timeout after it was queued, so that a request waiting behind a
	// transaction that hangs (a cluster without quorum) is answered in
	// time too.
	expires time.Time
	// For what a write's failure means.
	expected int64
	fence    store.Fence
	fenced   bool
}

// outcome is what became of a request: whether its comparisons held, the
// responses of the branch that ran, and the revision of the transaction.
type outcome struct {
	succeeded bool
	responses []*pb.ResponseOp
	rev       int64
	err       error
}

// batcher commits the requests queued to it, together.
type batcher struct {
	s     *Store
	alone bool // commit every request alone (to measure what batching saves)
	mu    sync.Mutex
	queue []*request
	flows int // goroutines committing (flow), at most batchFlows
}

// do queues r and waits for its outcome, or for r.ctx to end (the request
// may then still be committed, as a request cancelled in flight may be).
func (b *batcher) do(r *request) outcome {
	if r.expires.IsZero() {
		r.expires = time.Now().Add(b.s.timeout)
	}
	if b.alone {
		return b.s.commitOne(r)
	}
	r.done = make(chan outcome, 1)
	b.mu.Lock()
	b.queue = append(b.queue, r)
	start := b.flows < batchFlows
	if start {
		b.flows++
	}
	b.mu.Unlock()
	if start {
		go b.flow()
	}
	timeout := time.NewTimer(time.Until(r.expires))
	defer timeout.Stop()
	select {
	case o := <-r.done:
		return o
	case <-r.ctx.Done():
		return outcome{err: r.ctx.Err()}
	case <-timeout.C:
		return outcome{err: context.DeadlineExceeded}
	}
}

// flow commits batches until the queue is empty.
func (b *batcher) flow() {
	for {
		batch := b.take()
		if len(batch) == 0 {
			return
		}
		b.commit(batch)
	}
}

// take removes the next batch from the queue: requests in the order they
// came, at most batchOps of them and batchBytes (or one larger request),
// never two writes of one key (etcd refuses a transaction that changes a
// key twice; the second waits for the next batch). Requests whose caller
// has gone, or whose time is up, are answered and dropped. An empty batch
// ends the flow.
func (b *batcher) take() []*request {
	b.mu.Lock()
	defer b.mu.Unlock()
	var batch, rest []*request
	keys := map[string]bool{}
	size := 0
	for _, r := range b.queue {
		switch {
		case r.ctx.Err() != nil:
			r.done <- outcome{err: r.ctx.Err()}
		case !r.expires.IsZero() && time.Now().After(r.expires):
			r.done <- outcome{err: context.DeadlineExceeded}
		case len(batch) < batchOps && (len(batch) == 0 || size+r.size <= batchBytes) && !(r.write && keys[r.key]):
			batch = append(batch, r)
			size += r.size
			if r.write {
				keys[r.key] = true
			}
		default:
			rest = append(rest, r)
		}
	}
	b.queue = rest
	if len(batch) == 0 {
		b.flows--
	}
	return batch
}

// commit sends batch as one transaction and answers each request.
func (b *batcher) commit(batch []*request) {
	if len(batch) == 1 {
		batch[0].done <- b.s.commitOne(batch[0])
		return
	}
	// The transaction lasts as long as its last caller waits.
	deadline := time.Now().Add(b.s.timeout)
	for _, r := range batch {
		if r.expires.After(deadline) {
			deadline = r.expires
		}
	}
	ctx, cancel := context.WithDeadline(clientv3.WithRequireLeader(context.Background()), deadline)
	defer cancel()
	ops := make([]clientv3.Op, len(batch))
	for i, r := range batch {
		ops[i] = r.then
		if r.write {
			ops[i] = clientv3.OpTxn(r.cmps, []clientv3.Op{r.then}, r.orElse)
		}
	}
	resp, err := b.s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		if !batch[0].write || errors.Is(err, rpctypes.ErrTooManyOps) || errors.Is(err, rpctypes.ErrDuplicateKey) || errors.Is(err, rpctypes.ErrRequestTooLarge) {
			// Reads, whatever failed them: alone, each is a range
			// request, which etcd's client retries on another member
			// (a transaction it does not), and each gets its own answer
			// (a page of a List at a revision since compacted). Writes
			// refused for what they are together (a cluster with lower
			// limits than etcd's defaults): each alone.
			// At once, not one after another in this flow, each within
			// its own caller's time.
			for _, r := range batch {
				go func() { r.done <- b.s.commitOne(r) }()
			}
			return
		}
		for _, r := range batch {
			r.done <- outcome{err: err}
		}
		return
	}
	for i, r := range batch {
		o := outcome{succeeded: true, responses: resp.Responses[i : i+1], rev: resp.Header.Revision}
		if r.write {
			sub := resp.Responses[i].GetResponseTxn()
			o.succeeded, o.responses = sub.GetSucceeded(), sub.GetResponses()
		}
		r.done <- o
	}
}

// commitOne sends r alone, bounded by its caller's context: a read as a
// range request, a write as a transaction.
func (s *Store) commitOne(r *request) outcome {
	expires := r.expires
	if expires.IsZero() {
		expires = time.Now().Add(s.timeout)
	}
	ctx, cancel := context.WithDeadline(clientv3.WithRequireLeader(r.ctx), expires)
	defer cancel()
	if !r.write {
		resp, err := s.cli.Do(ctx, r.then)
		if err != nil {
			return outcome{err: err}
		}
		get := (*pb.RangeResponse)(resp.Get())
		return outcome{succeeded: true, rev: get.Header.Revision,
			responses: []*pb.ResponseOp{{Response: &pb.ResponseOp_ResponseRange{ResponseRange: get}}}}
	}
	resp, err := s.cli.Txn(ctx).If(r.cmps...).Then(r.then).Else(r.orElse...).Commit()
	if err != nil {
		return outcome{err: err}
	}
	return outcome{succeeded: resp.Succeeded, responses: resp.Responses, rev: resp.Header.Revision}
}

package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/breaker"
)

// op names a Store method and says what its refusals mean.
type op struct {
	// name is the method's name, for errors.
	name string
	// missing is what a 404 means: nil when it is success (Delete).
	missing error
	// refused is what a 412 or a 409 means, nil when the call sends no
	// condition.
	refused error
}

// The operations of a Store.
var (
	opGet         = op{name: "Get", missing: blobstore.ErrNotFound}
	opStat        = op{name: "Stat", missing: blobstore.ErrNotFound}
	opPutIfAbsent = op{name: "PutIfAbsent", missing: blobstore.ErrNotFound, refused: blobstore.ErrExists}
	opPutIfMatch  = op{name: "PutIfMatch", missing: blobstore.ErrConflict, refused: blobstore.ErrConflict}
	opDelete      = op{name: "Delete"}
)

// call is one Store call past the breaker, with its own deadline.
type call struct {
	// s is the store called, op the method, key the caller's key.
	s   *Store
	op  op
	key string
	// parent is the caller's context; ctx is the one the request runs
	// under, cancelled by the deadline or by end.
	parent context.Context
	ctx    context.Context
	cancel context.CancelFunc
	// timer cancels ctx at the deadline; timedOut records that it did.
	timer    *time.Timer
	timedOut atomic.Bool
	// probe is set when the call is the breaker's half-open probe.
	probe bool
	// once guards the end of the call; err is what end returned.
	once sync.Once
	err  error
}

// begin checks the key and the breaker and starts a call that has
// timeout to complete (extend moves that deadline).
func (s *Store) begin(ctx context.Context, o op, key string, timeout time.Duration) (*call, error) {
	if err := blobstore.CheckKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("s3store: %s %s: %w", o.name, key, err)
	}
	probe, err := s.breaker.Allow(true)
	if err != nil {
		return nil, fmt.Errorf("s3store: %s %s: %w: %w", o.name, key, blobstore.ErrUnavailable, err)
	}
	c := &call{s: s, op: o, key: key, parent: ctx, probe: probe}
	c.ctx, c.cancel = context.WithCancel(ctx)
	c.timer = time.AfterFunc(timeout, func() {
		c.timedOut.Store(true)
		c.cancel()
	})
	return c, nil
}

// extend gives the call d from now to complete.
func (c *call) extend(d time.Duration) {
	c.timer.Reset(d)
}

// end ends the call, once: it classifies err, reports the outcome to the
// breaker, and releases the deadline. Later calls return the first result.
func (c *call) end(err error) error {
	c.once.Do(func() {
		var outcome breaker.Outcome
		c.err, outcome = c.classify(err)
		c.s.breaker.Done(c.probe, outcome)
		c.timer.Stop()
		c.cancel()
	})
	return c.err
}

// abandon ends a call whose caller stopped reading the body: that says
// nothing about the store.
func (c *call) abandon() {
	c.once.Do(func() {
		c.s.breaker.Done(c.probe, breaker.Unknown)
		c.timer.Stop()
		c.cancel()
	})
}

// classify maps an error of the SDK or of a body to the contract's
// classes, and says what it tells about the store's health.
func (c *call) classify(err error) (error, breaker.Outcome) {
	switch code := statusOf(err); {
	case err == nil:
		return nil, breaker.Healthy
	case c.timedOut.Load():
		return c.unavailable(fmt.Errorf("no answer or a stalled transfer within the deadline: %w", err)), breaker.Failing
	case c.parent.Err() != nil:
		return fmt.Errorf("s3store: %s %s: %w", c.op.name, c.key, c.parent.Err()), breaker.Unknown
	case errors.Is(err, errShortBody):
		return fmt.Errorf("s3store: %s %s: %w", c.op.name, c.key, err), breaker.Unknown
	case code > 0:
		return c.classifyStatus(code, err)
	}
	return c.unavailable(err), breaker.Failing
}

// statusOf is the status code of the S3 answer err reports, or 0 when the
// call got no answer (the SDK reports a failed send as a ResponseError of
// status 0).
func statusOf(err error) int {
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) || re.Response == nil || re.Response.Response == nil {
		return 0
	}
	return re.HTTPStatusCode()
}

// classifyStatus maps an S3 error answer with status code.
func (c *call) classifyStatus(code int, err error) (error, breaker.Outcome) {
	switch {
	case code == http.StatusNotFound && c.op.missing == nil:
		return nil, breaker.Healthy
	case code == http.StatusNotFound:
		return fmt.Errorf("s3store: %s %s: %w", c.op.name, c.key, c.op.missing), breaker.Healthy
	case (code == http.StatusPreconditionFailed || code == http.StatusConflict) && c.op.refused != nil:
		return fmt.Errorf("s3store: %s %s: %w (%d)", c.op.name, c.key, c.op.refused, code), breaker.Healthy
	case code >= 500 || code == http.StatusTooManyRequests:
		return c.unavailable(err), breaker.Failing
	}
	return fmt.Errorf("s3store: %s %s: %w", c.op.name, c.key, err), breaker.Healthy
}

// unavailable wraps err as ErrUnavailable.
func (c *call) unavailable(err error) error {
	return fmt.Errorf("s3store: %s %s: %w: %w", c.op.name, c.key, blobstore.ErrUnavailable, err)
}

// body is a Get's body: it ends the call at io.EOF, on an error, or when
// closed early.
type body struct {
	// rc is the SDK's body; c the call it ends.
	rc io.ReadCloser
	c  *call
}

// Read reads the object, turning a failure into a classified error.
func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		if cerr := b.c.end(nil); cerr != nil {
			return n, cerr
		}
	case err != nil:
		err = b.c.end(err)
	}
	return n, err
}

// Close releases the connection; closing before the end abandons the
// call.
func (b *body) Close() error {
	b.c.abandon()
	return b.rc.Close()
}

// errShortBody: a PutIfAbsent body ended before the size it announced.
var errShortBody = errors.New("body shorter than its size")

// sizedBody is an upload body that fails with errShortBody, rather than
// io.EOF, when its reader ends before the section's size, so that a
// short local file is the caller's error, never the store's.
type sizedBody struct {
	*io.SectionReader
}

// Read reads the section, reporting an early end.
func (b *sizedBody) Read(p []byte) (int, error) {
	n, err := b.SectionReader.Read(p)
	if err == io.EOF {
		if pos, _ := b.Seek(0, io.SeekCurrent); pos < b.Size() {
			err = fmt.Errorf("%w: %d of %d bytes", errShortBody, pos, b.Size())
		}
	}
	return n, err
}

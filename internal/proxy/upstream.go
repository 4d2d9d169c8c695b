package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gemproxy/gemproxy/internal/breaker"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// UpstreamOptions configures the upstream client. Zero durations select the
// defaults given per field.
type UpstreamOptions struct {
	// URL is the upstream base, e.g. https://rubygems.org. Required.
	URL *url.URL
	// ConnectTimeout bounds the TCP and TLS handshake. Default 10s.
	ConnectTimeout time.Duration
	// FirstByteTimeout bounds the wait for response headers. Default 30s.
	FirstByteTimeout time.Duration
	// IdleTimeout bounds how long an answer's body may make no progress:
	// a read waiting on the upstream (the upstream's fault), or no read at
	// all (its reader's, e.g. a client that stopped reading a pass-through
	// answer). The stream is then cut. Default 30s.
	IdleTimeout time.Duration
	// MaxConcurrent caps concurrent cache fills (and revalidations)
	// upstream. Default 32.
	MaxConcurrent int
	// MaxPassThrough caps concurrent pass-through reads and writes
	// upstream. Their clients set their pace, so they have slots of their
	// own and can never hold a fill's. Default 32.
	MaxPassThrough int
	// Version is appended to the client's User-Agent as " gemproxy/VERSION".
	Version string
	// RedirectHosts lists the other hosts a read may be redirected to.
	// Default none: only same-host redirects are followed.
	RedirectHosts []string
}

// DefaultUpstreamOptions returns the values zero fields select (URL
// aside, which has none).
func DefaultUpstreamOptions() UpstreamOptions {
	return UpstreamOptions{ConnectTimeout: 10 * time.Second, FirstByteTimeout: 30 * time.Second, IdleTimeout: 30 * time.Second,
		MaxConcurrent: 32, MaxPassThrough: 32}
}

// withDefaults fills zero fields.
func (o UpstreamOptions) withDefaults() UpstreamOptions {
	d := DefaultUpstreamOptions()
	o.ConnectTimeout = cmp.Or(o.ConnectTimeout, d.ConnectTimeout)
	o.FirstByteTimeout = cmp.Or(o.FirstByteTimeout, d.FirstByteTimeout)
	o.IdleTimeout = cmp.Or(o.IdleTimeout, d.IdleTimeout)
	o.MaxConcurrent = cmp.Or(o.MaxConcurrent, d.MaxConcurrent)
	o.MaxPassThrough = cmp.Or(o.MaxPassThrough, d.MaxPassThrough)
	return o
}

// maxRedirects is how many upstream redirects a read follows.
const maxRedirects = 5

// errOtherHost is returned when the upstream redirects to another host.
var errOtherHost = errors.New("upstream redirected to another host; refusing to follow")

// upstream is the HTTP client of the configured upstream. It only ever
// connects to the configured host.
type upstream struct {
	opts UpstreamOptions
	// reads follows same-host redirects; writes never follow any.
	reads, writes *http.Client
	// fillSlots and passSlots hold one token per request in flight: cache
	// fills in one pool, pass-through reads and writes in the other.
	fillSlots, passSlots chan struct{}
	// prefix is scheme://host[/base path] without a trailing slash.
	prefix string
	// breaker stops calling an upstream that keeps failing.
	breaker *breaker.Breaker
	// onFailure, when set, is told of every call whose outcome is
	// failing: the status answered, or the error.
	onFailure func(code int, err error)
	// m receives the per-endpoint upstream measurements.
	m *metrics.Metrics
	// offline refuses every call (Options.Offline); the filler then serves
	// what the cache holds, whatever its age.
	offline bool
}

// newUpstream builds the client; offline refuses every call.
func newUpstream(opts UpstreamOptions, br *breaker.Breaker, m *metrics.Metrics, offline bool) *upstream {
	opts = opts.withDefaults()
	dialer := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}
	conns := opts.MaxConcurrent + opts.MaxPassThrough
	transport := &http.Transport{
		Proxy:               nil, // never via an environment proxy: only the configured host
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: opts.ConnectTimeout,
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	host := opts.URL.Host
	return &upstream{
		opts: opts,
		reads: &http.Client{Transport: transport, CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return fmt.Errorf("upstream: more than %d redirects", maxRedirects)
			}
			if req.URL.Host != host && !slices.Contains(opts.RedirectHosts, req.URL.Host) {
				return fmt.Errorf("%w: %s", errOtherHost, req.URL.Host)
			}
			return nil
		}},
		writes: &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		fillSlots: make(chan struct{}, opts.MaxConcurrent),
		passSlots: make(chan struct{}, opts.MaxPassThrough),
		prefix:    opts.URL.Scheme + "://" + host + strings.TrimSuffix(opts.URL.EscapedPath(), "/"),
		breaker:   br,
		m:         m,
		offline:   offline,
	}
}

// url builds the upstream URL for a validated raw path and query.
func (u *upstream) url(rawPath, rawQuery string) string {
	if rawQuery == "" {
		return u.prefix + rawPath
	}
	return u.prefix + rawPath + "?" + rawQuery
}

// userAgent returns the upstream User-Agent for a client's.
func (u *upstream) userAgent(client string) string {
	token := "gemproxy/" + u.opts.Version
	if client == "" {
		return token
	}
	return client + " " + token
}

// send performs req upstream for endpoint with timeouts t, as do does, and
// records the upstream metrics of endpoint; in offline mode it refuses.
func (u *upstream) send(ctx context.Context, endpoint string, req *http.Request, fill bool, t Timeouts) (*http.Response, error) {
	if u.offline {
		return nil, errOfflineWrite
	}
	start := time.Now()
	u.m.UpstreamInFlight.Inc()
	resp, err := u.do(ctx, req, fill, t)
	u.m.ObserveUpstream(endpoint, respCode(resp, err), time.Since(start))
	if err != nil {
		u.m.UpstreamInFlight.Dec()
		return nil, err
	}
	// In flight until its body is done, so a stalled body shows.
	resp.Body = &closeHook{ReadCloser: resp.Body, hook: u.m.UpstreamInFlight.Dec}
	return resp, nil
}

// closeHook runs hook once, after the body is closed.
type closeHook struct {
	io.ReadCloser
	hook func()
	once sync.Once
}

// Close closes the body, then runs the hook the first time.
func (c *closeHook) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(c.hook)
	return err
}

// respCode is the status code of resp, or 0 for a transport error.
func respCode(resp *http.Response, err error) int {
	if err != nil || resp == nil {
		return 0
	}
	return resp.StatusCode
}

// do sends one request upstream. The response body must be closed; it
// cuts a stream that makes no progress for the idle timeout and ends the
// call (breaker outcome, slot) once it is read, failed, cut or closed.
// fill tells a cache fill (same-host redirects followed, a fill slot, may
// probe the breaker) from a client's pass-through or write (no redirects,
// a pass-through slot, never a probe).
func (u *upstream) do(ctx context.Context, req *http.Request, fill bool, t Timeouts) (*http.Response, error) {
	t = t.or(Timeouts{FirstByte: u.opts.FirstByteTimeout, Idle: u.opts.IdleTimeout})
	if req.URL.Host != u.opts.URL.Host {
		return nil, fmt.Errorf("%w: %s", errOtherHost, req.URL.Host)
	}
	c, err := u.begin(ctx, fill)
	if err != nil {
		return nil, err
	}
	ctx, c.cancel = context.WithCancel(ctx)
	// The first-byte clock starts once the request (a push body included)
	// is written, like http.Transport's ResponseHeaderTimeout, but per call.
	var firstByte atomic.Pointer[time.Timer]
	var waited atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {
		firstByte.Store(time.AfterFunc(t.FirstByte, func() {
			waited.Store(true)
			c.cancel()
		}))
	}})
	req = req.WithContext(ctx)
	body := watchBody(req)
	client := u.writes
	if fill {
		client = u.reads
	}
	resp, err := client.Do(req)
	if tm := firstByte.Load(); tm != nil {
		tm.Stop()
	}
	if err != nil {
		if waited.Load() {
			err = errFirstByteTimeout
		}
		if bodyErr := body.failure(); bodyErr != nil {
			err = bodyErr // the client's, whatever the transport made of it
		}
		c.end(0, err)
		return nil, err
	}
	// The outcome counts for the breaker once the body is done: an upstream
	// that sends headers and then stalls or cuts off is failing too.
	status := resp.StatusCode
	resp.Body = newIdleBody(resp.Body, t.Idle, func(err error) { c.end(status, err) })
	return resp, nil
}

// call is one upstream request past the breaker, holding a slot.
type call struct {
	u *upstream
	// fill tells a cache fill from a client's pass-through or write.
	fill bool
	// probe is set when the call is the breaker's half-open probe.
	probe bool
	// slots is the pool the call's slot came from.
	slots chan struct{}
	// parent is the caller's context; cancel aborts the request.
	parent context.Context
	cancel context.CancelFunc
}

// begin lets a call past the breaker and waits, as long as ctx allows,
// for a slot in its pool.
func (u *upstream) begin(ctx context.Context, fill bool) (*call, error) {
	probe, err := u.breaker.Allow(fill)
	if err != nil {
		return nil, err
	}
	slots := u.passSlots
	if fill {
		slots = u.fillSlots
	}
	select {
	case slots <- struct{}{}:
		return &call{u: u, fill: fill, probe: probe, slots: slots, parent: ctx}, nil
	case <-ctx.Done():
		u.breaker.Done(probe, breaker.Unknown)
		return nil, fmt.Errorf("upstream: waiting for a free connection slot: %w", ctx.Err())
	}
}

// end ends the call, once: err is nil when the upstream answered status
// and its body was read or dropped, else why the call failed. It reports
// the outcome to the breaker (and a failure to onFailure), aborts the
// request and frees the slot.
func (c *call) end(status int, err error) {
	o := c.outcome(status, err)
	c.u.breaker.Done(c.probe, o)
	if o == breaker.Failing && c.u.onFailure != nil {
		c.u.onFailure(status, err)
	}
	c.cancel()
	<-c.slots
}

// outcome says what the end of the call tells about the upstream: nothing
// when the client's request body broke, its reader stopped reading, or a
// pass-through's client left or gave up.
func (c *call) outcome(status int, err error) breaker.Outcome {
	var bodyErr *requestBodyError
	switch {
	case err == nil && status < 500:
		return breaker.Healthy
	case errors.As(err, &bodyErr), errors.Is(err, errReaderIdle):
		return breaker.Unknown
	case err != nil && !c.fill && c.parent.Err() != nil:
		return breaker.Unknown
	}
	return breaker.Failing
}

// requestBody is a request body on its way upstream. A body that cannot
// be read, or ends before its Content-Length, is its sender's fault, never
// the upstream's: its first read error is kept to say so.
type requestBody struct {
	io.ReadCloser
	// left is how many bytes the declared length still expects; negative
	// when no length was declared.
	left int64
	mu   sync.Mutex
	err  error
}

// watchBody puts a requestBody around req's body; nil when it has none.
func watchBody(req *http.Request) *requestBody {
	if req.Body == nil || req.Body == http.NoBody {
		return nil
	}
	rb := &requestBody{ReadCloser: req.Body, left: req.ContentLength}
	req.Body = rb
	return rb
}

// Read reads through, turning an early end into io.ErrUnexpectedEOF and
// keeping the first error other than io.EOF.
func (rb *requestBody) Read(p []byte) (int, error) {
	n, err := rb.ReadCloser.Read(p)
	if rb.left >= 0 {
		rb.left -= int64(n)
		if err == io.EOF && rb.left > 0 {
			err = io.ErrUnexpectedEOF
		}
	}
	if err != nil && err != io.EOF {
		rb.mu.Lock()
		if rb.err == nil {
			rb.err = err
		}
		rb.mu.Unlock()
	}
	return n, err
}

// failure returns the body's read error as a *requestBodyError, or nil
// when it had none (or there is no body).
func (rb *requestBody) failure() error {
	if rb == nil {
		return nil
	}
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if rb.err == nil {
		return nil
	}
	return &requestBodyError{rb.err}
}

// requestBodyError is an upstream call that failed because its request
// body could not be read (malformed, cut off, over the size limit).
type requestBodyError struct{ err error }

// Error describes the failure.
func (e *requestBodyError) Error() string { return "request body unreadable: " + e.err.Error() }

// Unwrap returns the body's read error.
func (e *requestBodyError) Unwrap() error { return e.err }

// errFirstByteTimeout is returned when the upstream sent no response
// headers within the first-byte timeout.
var errFirstByteTimeout = &timeoutError{"upstream sent no response headers within the first-byte timeout"}

// Timeouts bounds the phases of one upstream request. A zero field takes
// the upstream's default.
type Timeouts struct {
	// FirstByte bounds the wait for response headers once the request is sent.
	FirstByte time.Duration
	// Idle bounds the wait between two body reads.
	Idle time.Duration
}

// or fills t's zero fields from def.
func (t Timeouts) or(def Timeouts) Timeouts {
	t.FirstByte = cmp.Or(t.FirstByte, def.FirstByte)
	t.Idle = cmp.Or(t.Idle, def.Idle)
	return t
}

// errIdleTimeout is returned by a body read after the upstream sent
// nothing for the idle timeout.
var errIdleTimeout = &timeoutError{"upstream sent no body bytes within the idle timeout"}

// errReaderIdle is returned by a body read after its reader read nothing
// for the idle timeout, and the stream was cut.
var errReaderIdle = &timeoutError{"upstream answer not read for the idle timeout; stream cut"}

// timeoutError is an error that reports itself as a timeout.
type timeoutError struct{ msg string }

// Error returns the message.
func (e *timeoutError) Error() string { return e.msg }

// Timeout reports true.
func (e *timeoutError) Timeout() bool { return true }

// idleBody is an upstream answer's body. A stream that makes no progress
// for timeout is cut: the upstream's fault when a Read waited on it all
// that time (errIdleTimeout), the reader's when no Read was called
// (errReaderIdle). end runs once, with nil at the end of the body or on
// Close, else with why the stream failed or was cut; a cut ends the call
// at once, without waiting for a reader that may never come back.
type idleBody struct {
	body    io.ReadCloser
	timeout time.Duration
	timer   *time.Timer
	end     func(err error)
	once    sync.Once

	mu sync.Mutex
	// reading is set while a Read waits on the upstream.
	reading bool
	// since is when the last Read began or returned.
	since time.Time
	// cut is why the stream was cut, once it was.
	cut error
	// ended is set once the call has ended.
	ended bool
}

// newIdleBody wraps body; end ends the upstream call.
func newIdleBody(body io.ReadCloser, timeout time.Duration, end func(err error)) *idleBody {
	b := &idleBody{body: body, timeout: timeout, end: end, since: time.Now()}
	b.timer = time.AfterFunc(timeout, b.expire)
	return b
}

// Read reads from the body, recording progress.
func (b *idleBody) Read(p []byte) (int, error) {
	if cut := b.progress(true); cut != nil {
		return 0, cut
	}
	n, err := b.body.Read(p)
	if cut := b.progress(false); cut != nil {
		return n, cut
	}
	if err != nil {
		b.finish(err)
	}
	return n, err
}

// progress records that a Read begins (reading) or returned, restarting
// the idle clock, unless the stream was cut: then it returns why.
func (b *idleBody) progress(reading bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut == nil {
		b.reading = reading
		b.since = time.Now()
	}
	return b.cut
}

// expire runs when the idle timer fires: it cuts the stream if nothing
// happened for timeout, else waits for the rest of it.
func (b *idleBody) expire() {
	b.mu.Lock()
	if b.ended {
		b.mu.Unlock()
		return
	}
	if idle := time.Since(b.since); idle < b.timeout {
		b.timer.Reset(b.timeout - idle)
		b.mu.Unlock()
		return
	}
	b.cut = errReaderIdle
	if b.reading {
		b.cut = errIdleTimeout
	}
	cut := b.cut
	b.mu.Unlock()
	b.finish(cut) // aborts the request: a waiting Read returns
}

// finish ends the call once; err is nil or io.EOF for a body read or
// dropped, else why it failed.
func (b *idleBody) finish(err error) {
	b.once.Do(func() {
		b.mu.Lock()
		b.ended = true
		b.mu.Unlock()
		b.timer.Stop()
		if err == io.EOF {
			err = nil
		}
		b.end(err)
	})
}

// Close closes the body and ends the call, if nothing ended it before.
func (b *idleBody) Close() error {
	err := b.body.Close()
	b.finish(nil)
	return err
}

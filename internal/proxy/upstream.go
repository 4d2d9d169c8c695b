package proxy

import (
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
	// IdleTimeout bounds the wait between two body reads. Default 30s.
	IdleTimeout time.Duration
	// MaxConcurrent caps concurrent upstream requests. Default 32.
	MaxConcurrent int
	// Version is appended to the client's User-Agent as " gemproxy/VERSION".
	Version string
	// RedirectHosts lists the other hosts a read may be redirected to.
	// Default none: only same-host redirects are followed.
	RedirectHosts []string
}

// withDefaults fills zero fields.
func (o UpstreamOptions) withDefaults() UpstreamOptions {
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.FirstByteTimeout == 0 {
		o.FirstByteTimeout = 30 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 30 * time.Second
	}
	if o.MaxConcurrent == 0 {
		o.MaxConcurrent = 32
	}
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
	sem           chan struct{}
	// prefix is scheme://host[/base path] without a trailing slash.
	prefix string
	// breaker stops calling an upstream that keeps failing.
	breaker *breaker
}

// newUpstream builds the client.
func newUpstream(opts UpstreamOptions, br *breaker) *upstream {
	opts = opts.withDefaults()
	dialer := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:               nil, // never via an environment proxy: only the configured host
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: opts.ConnectTimeout,
		MaxIdleConns:        opts.MaxConcurrent * 2,
		MaxIdleConnsPerHost: opts.MaxConcurrent * 2,
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
		sem:     make(chan struct{}, opts.MaxConcurrent),
		prefix:  opts.URL.Scheme + "://" + host + strings.TrimSuffix(opts.URL.EscapedPath(), "/"),
		breaker: br,
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

// do sends one request upstream. The response body must be closed; it
// enforces the idle timeout between reads and releases the concurrency slot
// on Close. follow selects the read client (same-host redirects followed).
func (u *upstream) do(ctx context.Context, req *http.Request, follow bool, t Timeouts) (*http.Response, error) {
	t = t.or(Timeouts{FirstByte: u.opts.FirstByteTimeout, Idle: u.opts.IdleTimeout})
	if req.URL.Host != u.opts.URL.Host {
		return nil, fmt.Errorf("%w: %s", errOtherHost, req.URL.Host)
	}
	if err := u.breaker.allow(); err != nil {
		return nil, err
	}
	select {
	case u.sem <- struct{}{}:
	case <-ctx.Done():
		u.breaker.done(true) // not the upstream's fault
		return nil, fmt.Errorf("upstream: waiting for a free connection slot: %w", ctx.Err())
	}
	ctx, cancel := context.WithCancel(ctx)
	// The first-byte clock starts once the request (a push body included)
	// is written, like http.Transport's ResponseHeaderTimeout, but per call.
	var firstByte atomic.Pointer[time.Timer]
	var waited atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {
		firstByte.Store(time.AfterFunc(t.FirstByte, func() {
			waited.Store(true)
			cancel()
		}))
	}})
	req = req.WithContext(ctx)
	client := u.writes
	if follow {
		client = u.reads
	}
	resp, err := client.Do(req)
	if tm := firstByte.Load(); tm != nil {
		tm.Stop()
	}
	if err != nil && waited.Load() {
		err = errFirstByteTimeout
	}
	if err != nil {
		u.breaker.done(false)
		cancel()
		<-u.sem
		return nil, err
	}
	// The outcome counts for the breaker once the body is done: an upstream
	// that sends headers and then stalls or cuts off is failing too.
	status := resp.StatusCode
	ib := &idleBody{
		body:    resp.Body,
		timeout: t.Idle,
		done: func(bodyOK bool) {
			u.breaker.done(bodyOK && status < 500)
			cancel()
			<-u.sem
		},
	}
	ib.timer = time.AfterFunc(t.Idle, func() {
		ib.fired.Store(true)
		cancel()
	})
	resp.Body = ib
	return resp, nil
}

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
	if t.FirstByte == 0 {
		t.FirstByte = def.FirstByte
	}
	if t.Idle == 0 {
		t.Idle = def.Idle
	}
	return t
}

// errIdleTimeout is returned by a body read after the upstream sent
// nothing for the idle timeout.
var errIdleTimeout = &timeoutError{"upstream sent no body bytes within the idle timeout"}

// timeoutError is an error that reports itself as a timeout.
type timeoutError struct{ msg string }

// Error returns the message.
func (e *timeoutError) Error() string { return e.msg }

// Timeout reports true.
func (e *timeoutError) Timeout() bool { return true }

// idleBody cancels the request when no body bytes arrive for timeout, and
// reports on Close whether the body arrived without a transport error.
type idleBody struct {
	body    io.ReadCloser
	timer   *time.Timer
	timeout time.Duration
	once    sync.Once
	done    func(bodyOK bool)
	// fired is set when the idle timer cancelled the request.
	fired atomic.Bool
	// failed is set when a read failed (reset, truncation, idle timeout).
	failed atomic.Bool
}

// Read reads from the body, re-arming the idle timer.
func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.timer.Reset(b.timeout)
	if err != nil && err != io.EOF {
		b.failed.Store(true)
		if b.fired.Load() {
			err = errIdleTimeout
		}
	}
	return n, err
}

// Close closes the body and releases the request's resources once.
func (b *idleBody) Close() error {
	err := b.body.Close()
	b.once.Do(func() {
		b.timer.Stop()
		b.done(!b.failed.Load())
	})
	return err
}

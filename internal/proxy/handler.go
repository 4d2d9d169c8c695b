package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/gemproxy/gemproxy/internal/metrics"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	fiberrecover "github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/gemproxy/gemproxy/internal/accesslog"
	"github.com/gemproxy/gemproxy/internal/cache"
)

// ServerOptions are the client-facing server limits. Zero values select the
// defaults given per field.
type ServerOptions struct {
	// ReadTimeout bounds reading one request, headers and body (a slow-loris
	// client is dropped). Default 60s; a push of a large gem must fit in it.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response. Default 0: unlimited, so one
	// slow downloader of a large gem is not cut off.
	WriteTimeout time.Duration
	// IdleTimeout bounds an idle keep-alive connection. Default 120s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers. Default 16 KiB.
	MaxHeaderBytes int
	// MaxConnections bounds concurrent connections. Default 10000.
	MaxConnections int
}

// DefaultServerOptions returns the values zero fields select.
func DefaultServerOptions() ServerOptions {
	return ServerOptions{ReadTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 16 << 10, MaxConnections: 10000}
}

// withDefaults fills zero fields.
func (o ServerOptions) withDefaults() ServerOptions {
	d := DefaultServerOptions()
	o.ReadTimeout = cmp.Or(o.ReadTimeout, d.ReadTimeout)
	o.IdleTimeout = cmp.Or(o.IdleTimeout, d.IdleTimeout)
	o.MaxHeaderBytes = cmp.Or(o.MaxHeaderBytes, d.MaxHeaderBytes)
	o.MaxConnections = cmp.Or(o.MaxConnections, d.MaxConnections)
	return o
}

// newApp builds the Fiber app: health, metrics, the admin API, then every
// other path through the route table.
func (p *Proxy) newApp() *fiber.App {
	so := p.opts.Server.withDefaults()
	app := fiber.New(fiber.Config{
		DisableStartupMessage: true,
		// /healthz, /readyz and /metrics exactly: not /Metrics or /metrics/.
		StrictRouting:     true,
		CaseSensitive:     true,
		StreamRequestBody: true, // request bodies are streamed upstream, never buffered whole
		// Multipart pushes (gem + attestations) are forwarded byte for byte,
		// never parsed.
		DisablePreParseMultipartForm: true,
		BodyLimit:                    int(p.opts.MaxBodySize),
		ReadBufferSize:               so.MaxHeaderBytes,
		ReadTimeout:                  so.ReadTimeout,
		WriteTimeout:                 so.WriteTimeout,
		IdleTimeout:                  so.IdleTimeout,
		Concurrency:                  so.MaxConnections,
		ErrorHandler:                 p.errorHandler,
	})
	app.Use(fiberrecover.New()) // health and metrics; handle recovers itself
	app.Use(originFormOnly)
	app.Get("/healthz", func(c *fiber.Ctx) error { return c.SendString("ok\n") })
	app.Get("/readyz", p.ready)
	if p.opts.MetricsHandler != nil {
		app.Get("/metrics", adaptor.HTTPHandler(p.opts.MetricsHandler))
	}
	p.registerAdmin(app)
	app.All("*", p.handle)
	return app
}

// originFormOnly refuses request targets that are not a path
// ("GET http://host/healthz", "OPTIONS *") before any route sees them.
func originFormOnly(c *fiber.Ctx) error {
	if uri := c.Request().Header.RequestURI(); len(uri) == 0 || uri[0] != '/' {
		return plainError(c, http.StatusBadRequest, "request target must be a path")
	}
	return c.Next()
}

// ready answers /readyz: 200 when the cache's most recent write succeeded
// (see cache.Store.Writable: a probe never writes) and the server is not
// draining. The upstream is not consulted.
func (p *Proxy) ready(c *fiber.Ctx) error {
	if p.draining.Load() {
		return p.answerError(c, endpointReadyz, http.StatusServiceUnavailable, "draining", nil)
	}
	if err := p.store.Writable(); err != nil {
		return p.answerError(c, endpointReadyz, http.StatusServiceUnavailable, "cache not writable", err)
	}
	return c.SendString("ok\n")
}

// errorHandler answers errors Fiber raises before the handler runs
// (oversized bodies, malformed requests) with a short plain-text reason.
func (p *Proxy) errorHandler(c *fiber.Ctx, err error) error {
	code := http.StatusInternalServerError
	var fe *fiber.Error
	if errors.As(err, &fe) {
		code = fe.Code
	}
	c.Response().Reset() // nothing of a half-built answer goes out
	return p.answerError(c, EndpointRejected, code, http.StatusText(code), err)
}

// dependencyAPIGone is the origin's answer to /api/v1/dependencies since
// 2024 (docs/protocol.md §3.5), served locally so Bundler 2.3 falls through
// without an upstream round trip.
const dependencyAPIGone = "The dependency API has gone away. See https://blog.rubygems.org/2023/02/22/dependency-api-deprecation.html for more information"

// requestLog collects what the access log and metrics report per request.
type requestLog struct {
	endpoint string
	gem      string // the gem the route names, for the status page
	outcome  metrics.Result
	bytes    int64
	source   metrics.Source
}

// handle routes every request that is not health or metrics.
func (p *Proxy) handle(c *fiber.Ctx) error {
	start := time.Now()
	method := c.Method()
	rl := requestLog{endpoint: EndpointRejected}
	defer func() {
		if r := recover(); r != nil {
			// A bug, not the client's fault: logged with its stack, and
			// answered with nothing of the half-built response.
			p.log.Error("panic serving request", "endpoint", rl.endpoint, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			c.Response().Reset()
			_ = p.answerError(c, rl.endpoint, http.StatusInternalServerError, "internal error", fmt.Errorf("panic: %v", r))
		}
		p.observe(c, method, &rl, start)
	}()

	// Views of Fiber's request buffers: valid until the handler returns, so
	// anything a fill keeps is cloned first (see detach).
	path, rawPath, rawQuery, err := splitRequestURI(utils.UnsafeString(c.Request().Header.RequestURI()))
	if err != nil {
		return plainError(c, http.StatusBadRequest, err.Error())
	}
	var paramBuf [maxParams]string
	rt, params, err := p.router.Match(method, path, &paramBuf)
	if err != nil {
		return plainError(c, http.StatusBadRequest, err.Error())
	}
	if rt == nil {
		rl.endpoint = EndpointUnknown
		if method != http.MethodGet && method != http.MethodHead {
			return plainError(c, http.StatusMethodNotAllowed, "method not allowed for this path")
		}
		return plainError(c, http.StatusNotFound, "not found")
	}
	rl.endpoint, rl.gem = rt.Endpoint, requestedGem(rt, params)
	switch {
	case rt.Handling == DependencyAPI:
		return p.dependencyAPI(c, path)
	case rt.Handling == Write || rt.Handling == PassThrough || hasCredentials(c) ||
		rt.Negotiated && !acceptsAnyFormat(c) || rt.Class == ClassAPI && !rt.CacheableQuery(rawQuery):
		rl.outcome, rl.source = metrics.ResultBypass, metrics.SourceUpstream
		rl.bytes = p.forward(c, rt, params, rawPath, rawQuery)
		return nil
	case rt.Handling == Home:
		// The RubyGems compact-index probe needs a 200 here; it is answered
		// locally so it works without the upstream. Browsers get the status
		// page.
		if p.wantsStatusPage(c) {
			return p.statusPage(c)
		}
		c.Set(fiber.HeaderContentType, contentTypeTextPlain)
		return c.SendString("gemproxy: a caching mirror of rubygems.org\n")
	}
	key := path
	if rt.Key != nil {
		key = rt.Key(append([]string(nil), params...))
	}
	if rt.Class == ClassAPI && rawQuery != "" {
		key += "?" + rawQuery
	}
	fr := fillRequest{rt: rt, key: key}
	if rt.Class == ClassVersions {
		p.fill.followVersions()
	}
	e := p.store.Lookup(key)
	outcome := metrics.ResultHit
	if e == nil || !p.fill.fresh(e) {
		detach(c, &fr)
		e, outcome, err = p.fill.resolve(c.UserContext(), fr, e)
	} else if req := &c.Context().Request; clientAhead(req, rt, e) {
		detach(c, &fr)
		e, outcome = p.fill.catchUp(c.UserContext(), fr, e, func(e *cache.Entry) bool { return clientAhead(req, rt, e) })
	}
	rl.outcome = outcome
	if err != nil {
		return p.readError(c, rt.Endpoint, err)
	}
	rl.source = metrics.SourceCache
	if outcome != metrics.ResultHit && outcome != metrics.ResultStale {
		rl.source = metrics.SourceUpstream
	}
	rl.bytes, err = p.serveEntry(c, rt, e, outcome)
	if errors.Is(err, cache.ErrNotFound) {
		// The body was replaced between lookup and open: answer again from
		// the entry that replaced it.
		c.Response().Reset()
		detach(c, &fr)
		if e, outcome, err = p.fill.lookup(c.UserContext(), fr); err == nil {
			rl.outcome = outcome
			rl.bytes, err = p.serveEntry(c, rt, e, outcome)
		}
	}
	if err != nil {
		return p.readError(c, rt.Endpoint, err)
	}
	return nil
}

// detach makes fr independent of Fiber's request buffers, which are reused
// once the handler returns: a fill (and its log lines) may outlive it.
func detach(c *fiber.Ctx, fr *fillRequest) {
	fr.key = strings.Clone(fr.key)
	fr.userAgent = string(c.Request().Header.UserAgent())
}

// observe records metrics and the access log line of one request.
func (p *Proxy) observe(c *fiber.Ctx, method string, rl *requestLog, start time.Time) {
	end := time.Now()
	d := end.Sub(start)
	status := c.Response().StatusCode()
	if rl.bytes == 0 && method != http.MethodHead && !c.Response().IsBodyStream() {
		rl.bytes = int64(len(c.Response().Body())) // answers gemproxy wrote itself
	}
	p.m.ObserveRequest(rl.endpoint, method, status, d)
	p.observeUsage(c, rl)
	if rl.outcome != 0 {
		p.m.Lookup(rl.endpoint, rl.outcome).Inc()
	}
	if rl.source != 0 && rl.bytes > 0 {
		p.m.ResponseBytes(rl.source).Add(float64(rl.bytes))
	}
	p.access.Log(accesslog.Entry{Time: end, Method: method, Endpoint: rl.endpoint, Status: status,
		Bytes: rl.bytes, Duration: d, Cache: rl.outcome.String()})
}

// readError answers a failed read of endpoint: the upstream's failure with
// its status and reason, anything else as an internal error.
func (p *Proxy) readError(c *fiber.Ctx, endpoint string, err error) error {
	var ue *upstreamError
	switch {
	case errors.As(err, &ue):
		if ue.retryAfter != "" {
			c.Set("Retry-After", ue.retryAfter)
		}
		if len(ue.body) > 0 {
			c.Set(fiber.HeaderContentType, cmp.Or(ue.contentType, contentTypeTextPlain))
			return c.Status(ue.status).Send(ue.body)
		}
		return p.answerError(c, endpoint, ue.status, ue.reason, ue)
	case errors.Is(err, context.Canceled):
		return nil // the client went away
	}
	return p.answerError(c, endpoint, http.StatusInternalServerError, "internal error", err)
}

// endpointReadyz labels the readiness probe's answers in the log.
const endpointReadyz = "readyz"

// answerError answers status with the one-line plain-text reason public,
// which must name no internal address or file path. Every 5xx gemproxy
// writes itself goes through here, and is logged with its cause.
func (p *Proxy) answerError(c *fiber.Ctx, endpoint string, status int, public string, cause error) error {
	if status >= http.StatusInternalServerError {
		reason := public
		if cause != nil {
			reason = cause.Error()
		}
		p.logServerError(c, endpoint, status, reason)
	}
	return plainError(c, status, public)
}

// logServerError logs a 5xx answer at WARN with the request's method, path
// (never its query) and endpoint, and the full reason (checksum mismatch,
// upstream status, timeout, open circuit, size limit …), which may name
// what the client is not told.
func (p *Proxy) logServerError(c *fiber.Ctx, endpoint string, status int, reason string) {
	p.log.LogAttrs(c.UserContext(), slog.LevelWarn, "server error",
		slog.String("method", strings.Clone(c.Method())), slog.String("path", strings.Clone(c.Path())),
		slog.String("endpoint", endpoint), slog.Int("status", status), slog.String("reason", reason))
}

// plainError answers status with a one-line plain-text reason.
func plainError(c *fiber.Ctx, status int, reason string) error {
	c.Set(fiber.HeaderContentType, contentTypeTextPlain)
	return c.Status(status).SendString(reason + "\n")
}

// dependencyAPI answers /api/v1/dependencies[.json|.marshal] as the origin does.
func (p *Proxy) dependencyAPI(c *fiber.Ctx, path string) error {
	c.Status(http.StatusNotFound)
	c.Set(fiber.HeaderCacheControl, "max-age=30, public")
	if len(path) > 5 && path[len(path)-5:] == ".json" {
		c.Set(fiber.HeaderContentType, "application/json; charset=utf-8")
		return c.SendString(`{"error":"` + dependencyAPIGone + `","code":404}`)
	}
	c.Set(fiber.HeaderContentType, contentTypeTextPlain)
	return c.SendString(dependencyAPIGone)
}

// acceptsAnyFormat reports whether the request states no format
// preference (no Accept, or */*), the only requests a negotiated route
// caches.
func acceptsAnyFormat(c *fiber.Ctx) bool {
	accept := utils.UnsafeString(c.Request().Header.Peek(fiber.HeaderAccept))
	return accept == "" || accept == "*/*"
}

// hasCredentials reports whether the request carries Authorization, OTP or
// Cookie: such requests are never answered from, nor stored in, the cache.
func hasCredentials(c *fiber.Ctx) bool {
	h := &c.Request().Header
	return len(h.Peek("Authorization")) > 0 || len(h.Peek("Otp")) > 0 || len(h.Peek("Cookie")) > 0
}

package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/gemproxy/gemproxy/internal/compactindex"
)

// maxWriteResponse bounds the response of a write call held in memory so
// the cache can be invalidated before the client sees the answer.
const maxWriteResponse = 1 << 20

// forwardTimeout bounds one forwarded call end to end; pushes of large gems
// need time, but nothing may hang forever (fasthttp does not cancel on
// client disconnect).
const forwardTimeout = 30 * time.Minute

// forward sends the request upstream unchanged (method, path, query, body
// streamed, headers minus hop-by-hop) and returns the upstream's answer
// untouched. Nothing is cached, coalesced, retried or redirected. After a
// successful write, the cached entries it changes are invalidated. It
// returns the response body bytes sent (when known).
func (p *Proxy) forward(c *fiber.Ctx, rt *Route, params []string, rawPath, rawQuery string) int64 {
	ctx, cancel := context.WithTimeout(c.UserContext(), forwardTimeout)
	method := c.Method()
	reqHeader := &c.Request().Header
	var body io.Reader
	contentLength := int64(reqHeader.ContentLength())
	if contentLength > p.opts.MaxBodySize {
		cancel()
		refuseBody(c, http.StatusRequestEntityTooLarge, "request body larger than the configured max_body_size")
		return 0
	}
	if method != http.MethodGet && method != http.MethodHead {
		body = c.Context().RequestBodyStream()
		if body == nil {
			body = bytes.NewReader(c.Body())
		}
		body = &clientBody{r: body, left: p.opts.MaxBodySize}
	}
	var captured *prefixCapture
	if rt.Handling == Write && body != nil {
		captured = &prefixCapture{r: body, limit: 64 << 10}
		body = captured
	}
	req, err := http.NewRequestWithContext(ctx, method, p.up.url(rawPath, rawQuery), body)
	if err != nil {
		cancel()
		_ = plainError(c, http.StatusBadRequest, "request cannot be forwarded")
		return 0
	}
	switch {
	case body == nil:
		req.ContentLength = 0
	case contentLength == 0:
		// As the client sent it: net/http would send a reader it cannot
		// size as an empty chunked body, which some servers refuse (411).
		req.Body, req.ContentLength = http.NoBody, 0
	case contentLength > 0:
		req.ContentLength = contentLength
	default:
		req.ContentLength = -1 // chunked
	}
	reqHeader.VisitAll(func(k, v []byte) {
		name := http.CanonicalHeaderKey(string(k))
		if !hopByHop[name] {
			req.Header.Add(name, string(v))
		}
	})
	req.Header.Set("User-Agent", p.up.userAgent(string(reqHeader.UserAgent())))
	resp, err := p.up.send(ctx, rt.Endpoint, req, false, p.policy(rt.Class).timeouts())
	if err != nil {
		cancel()
		var bodyErr *requestBodyError
		switch {
		case errors.Is(err, errBodyTooLarge):
			refuseBody(c, http.StatusRequestEntityTooLarge, "request body larger than the configured max_body_size")
		case errors.As(err, &bodyErr):
			refuseBody(c, http.StatusBadRequest, "malformed or interrupted request body")
		default:
			ue := errUpstream("request", err).(*upstreamError)
			_ = p.answerError(c, rt.Endpoint, ue.status, ue.reason, ue)
		}
		return 0
	}
	if resp.StatusCode >= http.StatusInternalServerError {
		p.logServerError(c, rt.Endpoint, resp.StatusCode, "upstream answered "+resp.Status+", passed on")
	}
	out := c.Response()
	out.SetStatusCode(resp.StatusCode)
	// An answer without Content-Type (a 204, some 302s) stays without one.
	out.Header.SetNoDefaultContentType(resp.Header.Get("Content-Type") == "")
	for name, values := range resp.Header {
		if hopByHop[name] {
			continue
		}
		for _, v := range values {
			out.Header.Add(name, v)
		}
	}
	if method == http.MethodHead {
		resp.Body.Close()
		cancel()
		out.SkipBody = true
		if resp.ContentLength >= 0 {
			out.Header.SetContentLength(int(resp.ContentLength))
		}
		return 0
	}
	if rt.Handling == Write {
		// Write answers are short: read them whole, invalidate, then answer,
		// so the client's next read already sees the change.
		b, err := readLimited(resp.Body, maxWriteResponse)
		resp.Body.Close()
		cancel()
		if err != nil {
			out.Reset()
			_ = p.answerError(c, rt.Endpoint, http.StatusBadGateway, "upstream response unreadable", err)
			return 0
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			p.invalidateAfterWrite(rt, params, rawQuery, captured.bytes(), b)
		}
		out.SetBodyRaw(b)
		return int64(len(b))
	}
	out.SetBodyStream(&closeHook{ReadCloser: resp.Body, hook: cancel}, int(resp.ContentLength))
	return max(resp.ContentLength, 0)
}

// refuseBody answers a request whose body gemproxy will not forward, and
// closes the connection: the rest of that body is never read.
func refuseBody(c *fiber.Ctx, status int, reason string) {
	c.Context().SetConnectionClose()
	_ = plainError(c, status, reason)
}

// errBodyTooLarge aborts a chunked request body over the size limit.
var errBodyTooLarge = errors.New("request body larger than max_body_size")

// clientBody is the client's request body on its way upstream. It fails
// once more than left bytes were read (a chunked body over the limit: the
// upstream sees a broken body and the client an error, never a truncated
// success). Like any body that fails to read, it is answered as the
// client's fault, not the upstream's (see requestBodyError).
type clientBody struct {
	r    io.Reader
	left int64
}

// Read reads through, enforcing the cap.
func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		err = errBodyTooLarge
	}
	return n, err
}

// prefixCapture keeps the first limit bytes read through it (a form body
// naming the yanked gem), without buffering the rest.
type prefixCapture struct {
	r     io.Reader
	limit int
	buf   []byte
}

// Read reads through, keeping a prefix.
func (pc *prefixCapture) Read(p []byte) (int, error) {
	n, err := pc.r.Read(p)
	if room := pc.limit - len(pc.buf); room > 0 && n > 0 {
		pc.buf = append(pc.buf, p[:min(n, room)]...)
	}
	return n, err
}

// bytes returns the captured prefix (nil for a nil capture).
func (pc *prefixCapture) bytes() []byte {
	if pc == nil {
		return nil
	}
	return pc.buf
}

// invalidateAfterWrite drops or marks stale what a successful push, yank or
// owner change makes outdated (docs/protocol.md §6.4).
func (p *Proxy) invalidateAfterWrite(rt *Route, params []string, rawQuery string, reqBody, respBody []byte) {
	var name, version, platform string
	switch rt.Endpoint {
	case "push":
		name, version = parsePushResponse(string(respBody))
	case "yank":
		name, version, platform = yankParams(rawQuery, reqBody)
	case "owners":
		if len(params) > 0 {
			name = params[0]
		}
	default:
		return
	}
	if !compactindex.ValidName(name) {
		return
	}
	keys := []string{"/versions", "/names", "/info/" + name,
		"/specs.4.8.gz", "/latest_specs.4.8.gz", "/prerelease_specs.4.8.gz"}
	for _, k := range keys {
		if _, err := p.store.Invalidate(k); err != nil {
			p.log.Error("invalidate after write", "key", k, "error", err)
		}
	}
	for _, prefix := range []string{"/api/v1/gems/" + name + ".", "/api/v1/gems/" + name + "/",
		"/api/v1/versions/" + name + ".", "/api/v1/versions/" + name + "/",
		"/api/v2/rubygems/" + name + "/", "/api/v1/activity/"} {
		if _, err := p.store.Purge(prefix); err != nil {
			p.log.Error("invalidate after write", "prefix", prefix, "error", err)
		}
	}
	if rt.Endpoint == "push" && compactindex.ValidFullName(name+"-"+version) {
		// A 404 remembered from before the push (a release script polling
		// for the new gem) must not hide it now.
		for _, k := range []string{"/gems/" + name + "-" + version + ".gem", "/quick/Marshal.4.8/" + name + "-" + version + ".gemspec.rz"} {
			if e := p.store.Peek(k); e != nil && e.Status != http.StatusOK {
				if err := p.store.Delete(k); err != nil {
					p.log.Error("drop negative entry after push", "key", k, "error", err)
				}
			}
		}
	}
	if rt.Endpoint == "yank" && !p.opts.KeepYanked && compactindex.ValidVersion(version) {
		full := name + "-" + version
		if platform != "" && platform != "ruby" && compactindex.ValidPlatform(platform) {
			full += "-" + platform
		}
		for _, k := range []string{"/gems/" + full + ".gem", "/quick/Marshal.4.8/" + full + ".gemspec.rz"} {
			if err := p.store.Delete(k); err != nil {
				p.log.Error("drop yanked", "key", k, "error", err)
			}
		}
	}
}

// yankParams reads gem_name, version and platform from a yank's query and
// form body as the origin does. Rails' params is
// request_parameters.merge(query_parameters) (ActionDispatch::Http::
// Parameters#parameters, actionpack/lib/action_dispatch/http/parameters.rb),
// so a key in the query wins over the same key in the body, even when
// empty; Rack keeps the last of repeated keys. A body cut at the capture
// limit may end in a broken pair; the pairs before it still parse.
func yankParams(rawQuery string, body []byte) (name, version, platform string) {
	query, _ := url.ParseQuery(rawQuery)
	form, _ := url.ParseQuery(string(body))
	get := func(key string) string {
		vs, ok := query[key]
		if !ok {
			vs = form[key]
		}
		if len(vs) == 0 {
			return ""
		}
		return vs[len(vs)-1]
	}
	return get("gem_name"), get("version"), get("platform")
}

// parsePushResponse extracts NAME and VERSION from the origin's
// "Successfully registered gem: NAME (VERSION)".
func parsePushResponse(body string) (name, version string) {
	_, rest, ok := strings.Cut(body, "gem: ")
	if !ok {
		return "", ""
	}
	name, rest, ok = strings.Cut(rest, " (")
	if !ok {
		return "", ""
	}
	version, _, _ = strings.Cut(rest, ")")
	return name, version
}

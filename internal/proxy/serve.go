package proxy

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"
	"github.com/valyala/fasthttp"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/compactindex"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// serveEntry writes e to the client, honouring If-None-Match (checked before
// Range), If-Modified-Since, a single Range and gzip for compact-index
// files. It returns the number of body bytes sent, or cache.ErrNotFound
// when the body vanished (replaced) before it could be opened; nothing is
// committed to the client then.
func (p *Proxy) serveEntry(c *fiber.Ctx, rt *Route, e *cache.Entry, outcome metrics.Result) (int64, error) {
	resp := c.Response()
	for _, f := range e.Header {
		resp.Header.Set(f.Name, f.Value)
	}
	resp.Header.Set("X-Cache", xCache(outcome))
	age := int64(0)
	if d := p.now().Sub(e.StoredAt); d > 0 {
		age = int64(d / time.Second)
	}
	var buf [20]byte
	resp.Header.SetBytesV("Age", strconv.AppendInt(buf[:0], age, 10))
	if outcome == metrics.ResultStale {
		resp.Header.Set("Warning", `110 gemproxy "Response is Stale"`)
	}
	if e.Status != http.StatusOK {
		resp.SetStatusCode(e.Status)
		return p.writeBody(c, e, false, 0, e.Size)
	}

	req := &c.Context().Request
	if inm := req.Header.Peek("If-None-Match"); len(inm) > 0 {
		if etagMatches(utils.UnsafeString(inm), e) {
			return notModified(c), nil
		}
	} else if ims := req.Header.Peek("If-Modified-Since"); len(ims) > 0 {
		if notModifiedSince(utils.UnsafeString(ims), e.HeaderValue("Last-Modified")) {
			return notModified(c), nil
		}
	}

	size := e.Size
	if rng := req.Header.Peek("Range"); len(rng) > 0 && !c.Context().IsHead() && rangeApplies(req, e) {
		start, end, ok := parseRange(utils.UnsafeString(rng), size)
		switch {
		case ok:
			resp.SetStatusCode(http.StatusPartialContent)
			var cr [80]byte
			v := append(cr[:0], "bytes "...)
			v = strconv.AppendInt(v, start, 10)
			v = append(v, '-')
			v = strconv.AppendInt(v, end-1, 10)
			v = append(v, '/')
			v = strconv.AppendInt(v, size, 10)
			resp.Header.SetBytesV("Content-Range", v)
			return p.writeBody(c, e, false, start, end)
		case !rt.CompactIndex && start >= size:
			// Never 416 for compact-index files (docs/protocol.md §5.4): they get the full body.
			resp.SetStatusCode(http.StatusRequestedRangeNotSatisfiable)
			resp.Header.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
			resp.Header.Del(fiber.HeaderCacheControl) // the entry's lifetime is not the error's
			resp.Header.SetContentType(contentTypeTextPlain)
			resp.SetBodyString("requested range starts beyond the end of the file\n")
			return 0, nil
		}
	}
	resp.SetStatusCode(http.StatusOK)
	if e.GzipID != 0 && acceptsGzip(req.Header.Peek("Accept-Encoding")) && len(req.Header.Peek("Range")) == 0 {
		resp.Header.Set("Content-Encoding", "gzip")
		return p.writeBody(c, e, true, 0, e.GzipSize)
	}
	return p.writeBody(c, e, false, 0, size)
}

// etagMatches reports whether the If-None-Match value inm names e's ETag.
func etagMatches(inm string, e *cache.Entry) bool {
	return compactindex.ETagMatches(inm, strings.Trim(strings.TrimPrefix(e.HeaderValue("Etag"), "W/"), `"`))
}

// xCache maps a lookup result to the X-Cache header value.
func xCache(r metrics.Result) string {
	switch r {
	case metrics.ResultHit:
		return "HIT"
	case metrics.ResultRevalidated:
		return "REVALIDATED"
	case metrics.ResultStale:
		return "STALE"
	default:
		return "MISS"
	}
}

// notModified answers 304 with the validators already set.
func notModified(c *fiber.Ctx) int64 {
	c.Response().SetStatusCode(http.StatusNotModified)
	c.Response().SkipBody = true
	return 0
}

// notModifiedSince reports whether Last-Modified lm is not after ims.
func notModifiedSince(ims, lm string) bool {
	if lm == "" {
		return false
	}
	t1, err1 := http.ParseTime(ims)
	t2, err2 := http.ParseTime(lm)
	return err1 == nil && err2 == nil && !t2.After(t1)
}

// rangeApplies checks If-Range: the Range is honoured only when If-Range is
// absent or names the current ETag or Last-Modified.
func rangeApplies(req *fasthttp.Request, e *cache.Entry) bool {
	ir := utils.UnsafeString(req.Header.Peek("If-Range"))
	if ir == "" {
		return true
	}
	if etag := e.HeaderValue("Etag"); etag != "" && !strings.HasPrefix(ir, "W/") && ir == etag {
		return true
	}
	return ir == e.HeaderValue("Last-Modified")
}

// parseRange parses a single "bytes=" range against size. It returns the
// half-open span [start, end) and ok when it is satisfiable; when it is not,
// start is set to size for an unsatisfiable single range, and ok is false.
// Multiple ranges and malformed headers give start 0 and ok false (the full
// body is sent).
func parseRange(h string, size int64) (start, end int64, ok bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false
	}
	if a == "" { // suffix range: last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return 0, 0, false
		}
		if size == 0 {
			return size, 0, false
		}
		if n > size {
			n = size
		}
		return size - n, size, true
	}
	s, err := strconv.ParseInt(a, 10, 64)
	if err != nil || s < 0 {
		return 0, 0, false
	}
	if s >= size {
		return size, 0, false
	}
	end = size
	if b != "" {
		last, err := strconv.ParseInt(b, 10, 64)
		if err != nil || last < s {
			return 0, 0, false
		}
		if last < size-1 { // not last+1 < size: last may be MaxInt64
			end = last + 1
		}
	}
	return s, end, true
}

// acceptsGzip reports whether Accept-Encoding allows gzip (RFC 9110
// §12.5.3): a gzip element decides by its q-value, else a "*" element does,
// else gzip is not acceptable. Names and the q parameter are matched in
// any case and spaces around ";" and "=" are allowed. A bare "gzip" is
// Bundler's explicit retry header, whose answer it does not decode
// (docs/protocol.md §5.3): it gets identity. It allocates nothing.
func acceptsGzip(ae []byte) bool {
	v := utils.UnsafeString(ae)
	if v == "" || v == "gzip" {
		return false
	}
	star, starSeen := false, false
	for v != "" {
		var elem string
		elem, v, _ = strings.Cut(v, ",")
		name, params, _ := strings.Cut(elem, ";")
		name = strings.TrimSpace(name)
		switch {
		case strings.EqualFold(name, "gzip"):
			return !zeroQ(params)
		case name == "*" && !starSeen:
			star, starSeen = !zeroQ(params), true
		}
	}
	return star
}

// zeroQ reports whether the parameters of an Accept-Encoding element
// (what follows its first ";") carry a q-value of zero: "0" optionally
// followed by "." and zeros ("q=0", "Q = 0.000").
func zeroQ(params string) bool {
	for params != "" {
		var param string
		param, params, _ = strings.Cut(params, ";")
		name, value, _ := strings.Cut(param, "=")
		if !strings.EqualFold(strings.TrimSpace(name), "q") {
			continue
		}
		value = strings.TrimSpace(value)
		if value == "" || value[0] != '0' {
			return false
		}
		if value = value[1:]; value == "" {
			return true
		}
		return value[0] == '.' && strings.Trim(value[1:], "0") == ""
	}
	return false
}

// writeBody sends bytes [start, end) of e's identity or gzip body. HEAD
// gets the length only. It returns the bytes sent, or cache.ErrNotFound
// when the body was replaced before it could be opened.
func (p *Proxy) writeBody(c *fiber.Ctx, e *cache.Entry, gzip bool, start, end int64) (int64, error) {
	resp := c.Response()
	n := end - start
	if c.Context().IsHead() {
		resp.SkipBody = true
		resp.Header.SetContentLength(int(n))
		return 0, nil
	}
	mem := e.Body
	if gzip {
		mem = e.Gzip
	}
	if mem != nil {
		resp.SetBodyRaw(mem[start:end])
		return n, nil
	}
	r, err := p.store.Open(e, gzip)
	if err != nil {
		return 0, err
	}
	r.Limit(start, end)
	setBodyStream(c, r, n)
	return n, nil
}

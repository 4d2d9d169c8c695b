package proxy

import (
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gemproxy/gemproxy/internal/cache"
)

// storedUpstreamHeaders are the upstream response headers kept with an entry
// and replayed on hits (besides those gemproxy computes itself).
var storedUpstreamHeaders = []string{
	"Content-Type", "Cache-Control", "Etag", "Last-Modified", "Content-Disposition",
	"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
	"Access-Control-Max-Age", "Access-Control-Expose-Headers",
}

// entryHeaders builds the header list stored with a new body of route rt
// from the upstream response header h, the body's sums and the TTL.
func entryHeaders(rt *Route, status int, h http.Header, md5sum [16]byte, sha [32]byte, ttl time.Duration, storedAt time.Time) []cache.Field {
	fields := make([]cache.Field, 0, 10)
	add := func(name, value string) {
		if value != "" {
			fields = append(fields, cache.Field{Name: name, Value: value})
		}
	}
	contentType := h.Get("Content-Type")
	if rt.ContentType != "" && status == http.StatusOK {
		contentType = rt.ContentType
	}
	if status != http.StatusOK {
		add("Content-Type", contentType)
		add("Cache-Control", maxAge(ttl))
		return fields
	}
	add("Content-Type", contentType)
	switch {
	case rt.CompactIndex:
		add("Accept-Ranges", "bytes")
		add("Etag", `"`+hex.EncodeToString(md5sum[:])+`"`)
		b64 := base64.StdEncoding.EncodeToString(sha[:])
		add("Repr-Digest", "sha-256=:"+b64+":")
		add("Digest", "sha-256="+b64)
		add("Cache-Control", maxAge(ttl))
		add("Last-Modified", lastModified(h, storedAt))
		add("Vary", "Accept-Encoding")
	case rt.Class == ClassFullIndex:
		add("Accept-Ranges", "bytes")
		add("Etag", h.Get("Etag"))
		add("Cache-Control", maxAge(ttl))
		add("Last-Modified", lastModified(h, storedAt))
	case rt.Immutable:
		add("Accept-Ranges", "bytes")
		etag := h.Get("Etag")
		if etag == "" {
			etag = `"` + hex.EncodeToString(md5sum[:]) + `"`
		}
		add("Etag", etag)
		add("Last-Modified", lastModified(h, storedAt))
		add("Cache-Control", "public, max-age=31536000, immutable")
	default:
		for _, name := range storedUpstreamHeaders[1:] {
			add(name, strings.Join(h.Values(name), ", "))
		}
	}
	return fields
}

// maxAge renders a public Cache-Control for ttl.
func maxAge(ttl time.Duration) string {
	return "max-age=" + strconv.FormatInt(int64(ttl/time.Second), 10) + ", public"
}

// lastModified is the upstream's Last-Modified, or storedAt.
func lastModified(h http.Header, storedAt time.Time) string {
	if v := h.Get("Last-Modified"); v != "" {
		return v
	}
	return storedAt.UTC().Format(http.TimeFormat)
}

// storable reports whether an upstream response may be stored for everyone
// (docs/protocol.md §3.8): not private, no-store or no-cache, no Set-Cookie, and
// no Vary on Authorization or Cookie.
func storable(h http.Header) bool {
	if len(h.Values("Set-Cookie")) > 0 {
		return false
	}
	for _, cc := range h.Values("Cache-Control") {
		for _, d := range strings.Split(cc, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			if name, _, _ := strings.Cut(d, "="); name == "private" || name == "no-store" || name == "no-cache" {
				return false
			}
		}
	}
	for _, v := range h.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			f = strings.TrimSpace(f)
			if strings.EqualFold(f, "Authorization") || strings.EqualFold(f, "Cookie") || f == "*" {
				return false
			}
		}
	}
	return true
}

// hopByHop lists the headers never forwarded in either direction.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Proxy-Connection": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Host": true, "Content-Length": true,
}

package testupstream

import (
	"compress/gzip"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gemproxy/gemproxy/internal/rubyfmt"
)

// S3AccessDenied is the body S3 (behind Fastly) answers for missing or
// yanked .gem files and quick gemspecs, with status 403.
const S3AccessDenied = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
	`<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>TESTUPSTREAM0000</RequestId><HostId>testupstream/host-id</HostId></Error>`

// Cache-Control values used by the upstream.
const (
	cachePublic60   = "max-age=60, public"                  // compact index, public API reads
	cacheS3Object   = "max-age=31536000"                    // S3 objects (gems, quick specs, specs files)
	cacheRailsDflt  = "max-age=0, private, must-revalidate" // Rails default
	cachePrivate    = "private, no-store"                   // authenticated responses
	varyPrivate     = "Cookie, Authorization"               // Vary of authenticated responses
	contentTypeText = "text/plain; charset=utf-8"           // compact index, plain API bodies
	contentTypeJSON = "application/json; charset=utf-8"     // JSON API
	contentTypeYAML = "text/yaml"                           // YAML API
	contentTypeBin  = "application/octet-stream"            // S3 objects
)

// serveCompact serves a compact-index file with the exact headers of
// docs/protocol.md §4.4.
func (s *Server) serveCompact(w http.ResponseWriter, r *http.Request, rp *rep) {
	h := w.Header()
	h.Set("Content-Type", contentTypeText)
	h.Set("Accept-Ranges", "bytes")
	h.Set("ETag", `"`+rp.md5hex+`"`)
	b64 := base64.StdEncoding.EncodeToString(rp.sha256)
	switch s.opts.Digest {
	case DigestRails:
		h.Set("Digest", "sha-256="+b64)
		h.Set("Repr-Digest", "sha-256=:"+b64+":")
	case DigestFastly:
		h.Set("Digest", `sha-256="`+b64+`"`)
		h.Set("Repr-Digest", `sha-256="`+b64+`"`)
	}
	h.Set("Cache-Control", cachePublic60)
	h.Set("Last-Modified", rp.mod.UTC().Format(http.TimeFormat))
	if s.opts.GzipCompactIndex {
		h.Set("Vary", "Accept-Encoding")
	}
	s.serveBytes(w, r, rp.body, `"`+rp.md5hex+`"`, rp.mod, s.opts.GzipCompactIndex)
}

// serveArtifact serves an S3-like object (.gem, quick gemspec, specs file).
func (s *Server) serveArtifact(w http.ResponseWriter, r *http.Request, body []byte, md5hex string, mod time.Time) int {
	h := w.Header()
	h.Set("Content-Type", contentTypeBin)
	h.Set("Accept-Ranges", "bytes")
	h.Set("ETag", `"`+md5hex+`"`)
	h.Set("Last-Modified", mod.UTC().Format(http.TimeFormat))
	h.Set("Cache-Control", cacheS3Object)
	return s.serveBytes(w, r, body, `"`+md5hex+`"`, mod, false)
}

// s3Denied answers 403 with the AWS XML body.
func s3Denied(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/xml")
	writeBody(w, r, http.StatusForbidden, []byte(S3AccessDenied))
}

// serveSpecsFile serves specs.4.8.gz, latest_specs.4.8.gz or
// prerelease_specs.4.8.gz.
func (s *Server) serveSpecsFile(w http.ResponseWriter, r *http.Request, name string) {
	files, err := s.specsFiles()
	if err != nil {
		w.Header().Set("Content-Type", contentTypeText)
		writeBody(w, r, http.StatusInternalServerError, []byte("testupstream: "+err.Error()+"\n"))
		return
	}
	rp := files[name]
	s.serveArtifact(w, r, rp.body, rp.md5hex, rp.mod)
}

// serveQuickSpec serves quick/Marshal.4.8/FULL.gemspec.rz.
func (s *Server) serveQuickSpec(w http.ResponseWriter, r *http.Request, full string) {
	v := s.lookupVersion(full)
	if v == nil || s.isYanked(v) {
		s3Denied(w, r)
		return
	}
	body, err := v.quickSpec(s.opts.Marshal != nil)
	if err != nil {
		w.Header().Set("Content-Type", contentTypeText)
		writeBody(w, r, http.StatusInternalServerError, []byte("testupstream: quick gemspec: "+err.Error()+"\n"))
		return
	}
	rp := newRep(body, v.created)
	s.serveArtifact(w, r, rp.body, rp.md5hex, rp.mod)
}

// serveGem serves gems/FULL.gem and counts full downloads.
func (s *Server) serveGem(w http.ResponseWriter, r *http.Request, full string) {
	v := s.lookupVersion(full)
	if v == nil || s.isYanked(v) {
		s3Denied(w, r)
		return
	}
	w.Header().Set("X-Amz-Meta-Sha256", base64.StdEncoding.EncodeToString(mustHex(v.sha256)))
	w.Header().Set("X-Amz-Meta-Gem", v.spec.Name)
	w.Header().Set("X-Amz-Meta-Version", v.spec.Version)
	w.Header().Set("X-Amz-Meta-Platform", v.spec.Platform)
	if st := s.serveArtifact(w, r, v.gem, v.gemMD5(), v.created); st == http.StatusOK && r.Method == http.MethodGet {
		v.downloads.Add(1)
	}
}

// isYanked reads the yanked flag under the lock.
func (s *Server) isYanked(v *version) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return v.yanked
}

// mustHex decodes a hex string produced by this package.
func mustHex(h string) []byte {
	b := make([]byte, len(h)/2)
	for i := range b {
		x, _ := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		b[i] = byte(x)
	}
	return b
}

// serveBytes answers conditionals (If-None-Match first, then
// If-Modified-Since), then a single Range, then the full body (gzipped when
// allowed and requested). The caller has set the validators. It returns the
// status sent.
func (s *Server) serveBytes(w http.ResponseWriter, r *http.Request, body []byte, etag string, mod time.Time, gz bool) int {
	h := w.Header()
	if inm := strings.Join(r.Header.Values("If-None-Match"), ","); inm != "" {
		if etagMatch(inm, etag) {
			w.WriteHeader(http.StatusNotModified)
			return http.StatusNotModified
		}
	} else if ims := r.Header.Get("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil && !mod.Truncate(time.Second).After(t) {
			w.WriteHeader(http.StatusNotModified)
			return http.StatusNotModified
		}
	}
	if rg := r.Header.Get("Range"); rg != "" && r.Method == http.MethodGet && !s.opts.IgnoreRange && ifRangeOK(r, etag, mod) {
		start, end, ok, unsat := parseRange(rg, len(body))
		if unsat {
			h.Set("Content-Range", "bytes */"+itoa(len(body)))
			writeBody(w, r, http.StatusRequestedRangeNotSatisfiable, nil)
			return http.StatusRequestedRangeNotSatisfiable
		}
		if ok {
			h.Set("Content-Range", "bytes "+itoa(start)+"-"+itoa(end)+"/"+itoa(len(body)))
			writeBody(w, r, http.StatusPartialContent, body[start:end+1])
			return http.StatusPartialContent
		}
	}
	if gz && r.Header.Get("Range") == "" && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		writeBody(w, r, http.StatusOK, rubyfmt.Gzip(body, time.Time{}, gzip.DefaultCompression))
		return http.StatusOK
	}
	writeBody(w, r, http.StatusOK, body)
	return http.StatusOK
}

// acceptsGzip reports whether an Accept-Encoding value allows gzip (an
// explicit "gzip" or "*" with a non-zero q).
func acceptsGzip(ae string) bool {
	for _, part := range strings.Split(ae, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.TrimSpace(name)
		if !strings.EqualFold(name, "gzip") && name != "*" {
			continue
		}
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			q, _ = strconv.ParseFloat(v, 64)
		}
		return q > 0
	}
	return false
}

// etagMatch implements the weak comparison of If-None-Match: a comma list,
// "*", W/ prefixes ignored; bare unquoted tokens are accepted too.
func etagMatch(header, etag string) bool {
	want := strings.Trim(strings.TrimPrefix(etag, "W/"), `"`)
	for _, tok := range strings.Split(header, ",") {
		tok = strings.TrimSpace(tok)
		if tok == "*" {
			return true
		}
		if strings.Trim(strings.TrimPrefix(tok, "W/"), `"`) == want {
			return true
		}
	}
	return false
}

// ifRangeOK evaluates If-Range: absent, or a strong ETag match, or an exact
// Last-Modified date match.
func ifRangeOK(r *http.Request, etag string, mod time.Time) bool {
	ir := strings.TrimSpace(r.Header.Get("If-Range"))
	if ir == "" {
		return true
	}
	if strings.HasPrefix(ir, `"`) || strings.HasPrefix(ir, "W/") {
		return ir == etag
	}
	t, err := http.ParseTime(ir)
	return err == nil && t.Equal(mod.Truncate(time.Second))
}

// parseRange parses a single byte range against size. ok means a
// satisfiable range [start, end]; unsat means 416; neither means the header
// is ignored (multiple ranges, bad syntax).
func parseRange(spec string, size int) (start, end int, ok, unsat bool) {
	const prefix = "bytes="
	if len(spec) < len(prefix) || !strings.EqualFold(spec[:len(prefix)], prefix) {
		return 0, 0, false, false
	}
	spec = strings.TrimSpace(spec[len(prefix):])
	if strings.Contains(spec, ",") {
		return 0, 0, false, false
	}
	a, b, found := strings.Cut(spec, "-")
	if !found {
		return 0, 0, false, false
	}
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	if a == "" {
		n, err := strconv.Atoi(b)
		if err != nil || n < 0 {
			return 0, 0, false, false
		}
		if n == 0 || size == 0 {
			return 0, 0, false, true
		}
		return max(size-n, 0), size - 1, true, false
	}
	first, err := strconv.Atoi(a)
	if err != nil || first < 0 {
		return 0, 0, false, false
	}
	last := size - 1
	if b != "" {
		last, err = strconv.Atoi(b)
		if err != nil || last < first {
			return 0, 0, false, false
		}
	}
	if first >= size {
		return 0, 0, false, true
	}
	return first, min(last, size-1), true, false
}

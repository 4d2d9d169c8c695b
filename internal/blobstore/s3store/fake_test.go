package s3store

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeS3 is an in-process S3 server for unit tests: path-style PutObject
// (with If-None-Match: * and If-Match), GetObject, HeadObject and
// DeleteObject, on one bucket, with no signature checks. It keeps the
// user metadata (x-amz-meta-*) of an object with it. fault, when set,
// sees every request first and may answer it itself (an injected 5xx, a
// reset, a stall, a 409) by returning true.
type fakeS3 struct {
	// srv is the fake's HTTP server on loopback.
	srv *httptest.Server
	// ignoreConditions makes it a store that honours no condition.
	ignoreConditions atomic.Bool
	// requests counts the requests received.
	requests atomic.Int64
	// fault is the hook that setFault installs.
	fault atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]
	// released is closed at the end of the test, freeing stalled handlers
	// (a handler that has not read its request body is not told when the
	// client leaves).
	released chan struct{}

	// mu guards objects, the stored bodies by object name, and meta, their
	// user metadata headers.
	mu      sync.Mutex
	objects map[string][]byte
	meta    map[string]http.Header
}

// fakeBucket is the fake's only bucket.
const fakeBucket = "fake"

// newFakeS3 starts a fake on loopback, closed at the end of the test.
func newFakeS3(t *testing.T) *fakeS3 {
	f := &fakeS3{objects: make(map[string][]byte), meta: make(map[string]http.Header), released: make(chan struct{})}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	t.Cleanup(func() { close(f.released) }) // runs first
	return f
}

// stall is a fault that never answers: it holds the request until the
// client leaves or the test ends.
func (f *fakeS3) stall(w http.ResponseWriter, r *http.Request) bool {
	select {
	case <-r.Context().Done():
	case <-f.released:
	}
	return true
}

// setFault installs fn as the fault hook (nil removes it).
func (f *fakeS3) setFault(fn func(w http.ResponseWriter, r *http.Request) bool) {
	if fn == nil {
		f.fault.Store(nil)
		return
	}
	f.fault.Store(&fn)
}

// serve answers one S3 request.
func (f *fakeS3) serve(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	if fn := f.fault.Load(); fn != nil && (*fn)(w, r) {
		return
	}
	key, ok := strings.CutPrefix(r.URL.Path, "/"+fakeBucket+"/")
	if !ok {
		s3Error(w, http.StatusNotFound, "NoSuchBucket")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		f.get(w, r, key)
	case http.MethodPut:
		f.put(w, r, key)
	case http.MethodDelete:
		f.mu.Lock()
		delete(f.objects, key)
		delete(f.meta, key)
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		s3Error(w, http.StatusMethodNotAllowed, "MethodNotAllowed")
	}
}

// get answers GetObject and HeadObject.
func (f *fakeS3) get(w http.ResponseWriter, r *http.Request, key string) {
	f.mu.Lock()
	b, ok := f.objects[key]
	meta := f.meta[key]
	f.mu.Unlock()
	if !ok {
		s3Error(w, http.StatusNotFound, "NoSuchKey")
		return
	}
	maps.Copy(w.Header(), meta)
	w.Header().Set("ETag", etag(b))
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodGet {
		w.Write(b)
	}
}

// put answers PutObject, deciding its condition and storing atomically.
func (f *fakeS3) put(w http.ResponseWriter, r *http.Request, key string) {
	b, err := io.ReadAll(r.Body)
	if err != nil || int64(len(b)) != r.ContentLength {
		s3Error(w, http.StatusBadRequest, "IncompleteBody")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old, exists := f.objects[key]
	if !f.ignoreConditions.Load() {
		match := r.Header.Get("If-Match")
		switch {
		case r.Header.Get("If-None-Match") == "*" && exists:
			s3Error(w, http.StatusPreconditionFailed, "PreconditionFailed")
			return
		case match != "" && !exists:
			s3Error(w, http.StatusNotFound, "NoSuchKey")
			return
		case match != "" && match != etag(old):
			s3Error(w, http.StatusPreconditionFailed, "PreconditionFailed")
			return
		}
	}
	f.objects[key] = b
	f.meta[key] = userMetadata(r.Header)
	w.Header().Set("ETag", etag(b))
	w.WriteHeader(http.StatusOK)
}

// userMetadata is the x-amz-meta-* headers of h.
func userMetadata(h http.Header) http.Header {
	meta := http.Header{}
	for k, v := range h {
		if strings.HasPrefix(strings.ToLower(k), "x-amz-meta-") {
			meta[k] = v
		}
	}
	return meta
}

// count is how many objects the fake holds.
func (f *fakeS3) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.objects)
}

// etag is S3's ETag of a single-part object: its quoted MD5.
func etag(b []byte) string {
	sum := md5.Sum(b)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// s3Error writes an S3 error answer (no body for HEAD).
func s3Error(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><RequestId>fake</RequestId></Error>`, code, code)
}

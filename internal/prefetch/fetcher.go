package prefetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/proxy"
)

// Fetcher puts one path (/gems/FILE.gem, /info/NAME, /versions, /names)
// into a gemproxy's cache.
type Fetcher interface {
	// Fetch gets path into the cache and describes its body. The error
	// does not repeat path.
	Fetch(ctx context.Context, path string) (Result, error)
}

// Result describes the body of a fetched path.
type Result struct {
	// Hit reports that the cache held it already.
	Hit bool
	// Size is the body's length.
	Size int64
	// SHA256 is the body's SHA-256.
	SHA256 [32]byte
	// Body is the body of an /info file, whose dependencies Run fetches
	// next; nil for other paths.
	Body []byte
}

// isInfo reports whether path is an /info file, whose body a Fetcher
// returns.
func isInfo(path string) bool { return strings.HasPrefix(path, "/info/") }

// proxyFetcher fetches through a proxy over a data directory, in process.
type proxyFetcher struct {
	// p runs the read path.
	p *proxy.Proxy
	// store is p's cache, read for the bodies of /info files.
	store *cache.Store
}

// NewProxyFetcher returns a Fetcher running p's read path for each path
// (see proxy.Proxy.Fetch): the same verification and storage as for a
// client, with no server. store is p's cache.
func NewProxyFetcher(p *proxy.Proxy, store *cache.Store) Fetcher {
	return proxyFetcher{p: p, store: store}
}

// Fetch runs p.Fetch, and reads the body of an /info file.
func (f proxyFetcher) Fetch(ctx context.Context, path string) (Result, error) {
	e, hit, err := f.p.Fetch(ctx, path)
	if err != nil {
		return Result{}, err
	}
	r := Result{Hit: hit, Size: e.Size, SHA256: e.SHA256}
	switch {
	case !isInfo(path):
	case e.Body != nil:
		r.Body = e.Body
	default:
		if r.Body, err = f.readBody(e); err != nil {
			return Result{}, fmt.Errorf("stored, but reading it back failed: %w", err)
		}
	}
	return r, nil
}

// readBody reads e's body from the cache.
func (f proxyFetcher) readBody(e *cache.Entry) ([]byte, error) {
	rd, err := f.store.Open(e, false)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(rd)
}

// Timeouts of the HTTP client of a running gemproxy.
var (
	// connectTimeout bounds the TCP and TLS handshakes, as the proxy's
	// own upstream client does by default.
	connectTimeout = proxy.DefaultUpstreamOptions().ConnectTimeout
	// requestTimeout bounds one download, request to last byte. A miss is
	// answered once the server's fill is done, which the default fill
	// timeout bounds: this leaves five minutes more for the transfer.
	requestTimeout = cache.DefaultOptions().FillTimeout + 5*time.Minute
)

// maxReasonBytes bounds the part of an error response read for its reason.
const maxReasonBytes = 1 << 10

// httpFetcher fetches through a running gemproxy.
type httpFetcher struct {
	// client keeps the connections to the server.
	client *http.Client
	// prefix is the server's base URL without a trailing slash.
	prefix string
	// userAgent is sent with every request.
	userAgent string
}

// NewHTTPFetcher returns a Fetcher of a running gemproxy at base, whose
// client keeps up to jobs connections and sends userAgent. A response is
// a hit when its X-Cache header says HIT.
func NewHTTPFetcher(base *url.URL, jobs int, userAgent string) Fetcher {
	client := &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: connectTimeout,
			MaxIdleConnsPerHost: jobs,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		},
	}
	return httpFetcher{client: client, prefix: strings.TrimRight(base.String(), "/"), userAgent: userAgent}
}

// Fetch GETs path from the server and hashes the body.
func (f httpFetcher) Fetch(ctx context.Context, path string) (Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.prefix+path, nil)
	if err != nil {
		return Result{}, err
	}
	req.Header.Set("User-Agent", f.userAgent)
	resp, err := f.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL would repeat the path
		}
		return Result{}, fmt.Errorf("request failed: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxReasonBytes))
		reason, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		if reason == "" {
			return Result{}, fmt.Errorf("HTTP %s", resp.Status)
		}
		return Result{}, fmt.Errorf("HTTP %s: %s", resp.Status, strings.TrimSpace(reason))
	}
	h := sha256.New()
	var body bytes.Buffer
	w := io.Writer(h)
	if isInfo(path) {
		w = io.MultiWriter(h, &body)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return Result{}, fmt.Errorf("download failed after %d bytes: %w", n, err)
	}
	r := Result{Hit: resp.Header.Get("X-Cache") == "HIT", Size: n}
	h.Sum(r.SHA256[:0])
	if isInfo(path) {
		r.Body = body.Bytes()
	}
	return r, nil
}

package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/gemproxy/gemproxy/internal/cache"
)

// The admin API's paths, answered on the proxy's own port when
// Options.AdminToken is set. Without a token gemproxy has no /-/ path: each
// is answered as any unknown path.
const (
	// AdminStatsPath answers GET with the cache.Stats of the store as JSON.
	AdminStatsPath = "/-/stats"
	// AdminPurgePath removes, on POST, the entries whose key starts with
	// the query parameter prefix, and answers a PurgeResult.
	AdminPurgePath = "/-/purge"
	// AdminVerifyPath runs, on POST, cache.Store.Repair and streams its
	// progress as VerifyLines, one JSON object per line.
	AdminVerifyPath = "/-/verify"
)

// endpointAdmin labels the admin API's answers in the log.
const endpointAdmin = "admin"

// PurgeResult is the answer of POST /-/purge.
type PurgeResult struct {
	// Removed is the number of entries removed.
	Removed int `json:"removed"`
	// File is the cache file's size and free space after the purge: a
	// running server's file does not shrink, its free pages are reused.
	File cache.FileUsage `json:"file"`
}

// VerifyLine is one line of POST /-/verify's answer: a problem as soon as
// it is found, the progress every verifyProgressEvery, and a last line
// with Done (or Error) set.
type VerifyLine struct {
	cache.RepairProgress
	// Done marks the last line of a verify that checked every entry.
	Done bool `json:"done,omitempty"`
	// File is the cache file's size and free space, on the last line.
	File *cache.FileUsage `json:"file,omitempty"`
	// Error says why the verify stopped early, on the last line.
	Error string `json:"error,omitempty"`
}

// verifyProgressEvery is how often POST /-/verify reports its progress.
const verifyProgressEvery = time.Second

// admin answers the admin API.
type admin struct {
	p *Proxy
	// tokenHash is the SHA-256 of Options.AdminToken: hashes of equal
	// length are compared, so the comparison tells nothing of the length.
	tokenHash [sha256.Size]byte
	// verifying is held while a verify runs: one at a time.
	verifying sync.Mutex
}

// registerAdmin adds the admin API's routes to app when a token is
// configured. They are matched on the request path exactly as received,
// before the route table: no other spelling (//-/stats, /-/stats/,
// /%2D/stats) reaches them, and they are never cached nor sent upstream.
func (p *Proxy) registerAdmin(app *fiber.App) {
	if p.opts.AdminToken == "" {
		return
	}
	a := &admin{p: p, tokenHash: sha256.Sum256([]byte(p.opts.AdminToken))}
	app.Get(AdminStatsPath, a.authorized(a.stats))
	app.Post(AdminPurgePath, a.authorized(a.purge))
	app.Post(AdminVerifyPath, a.authorized(a.verify))
}

// authorized runs next only for a request bearing the admin token; any
// other gets 401 and changes nothing.
func (a *admin) authorized(next fiber.Handler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderCacheControl, "no-store")
		if !a.bearsToken(c.Get(fiber.HeaderAuthorization)) {
			a.p.log.Warn("admin request refused: missing or wrong token",
				"method", c.Method(), "path", c.Path(), "remote", c.IP())
			c.Set(fiber.HeaderWWWAuthenticate, "Bearer")
			return plainError(c, http.StatusUnauthorized, "admin token missing or wrong")
		}
		return next(c)
	}
}

// bearsToken reports whether the Authorization header value is "Bearer
// TOKEN" with the admin token, comparing in constant time.
func (a *admin) bearsToken(authorization string) bool {
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], a.tokenHash[:]) == 1
}

// stats answers GET /-/stats.
func (a *admin) stats(c *fiber.Ctx) error {
	return c.JSON(a.p.store.Stats())
}

// purge answers POST /-/purge?prefix=PATH-PREFIX.
func (a *admin) purge(c *fiber.Ctx) error {
	prefix := c.Query("prefix")
	if !strings.HasPrefix(prefix, "/") {
		return plainError(c, http.StatusBadRequest, "prefix must be a path prefix starting with / (e.g. /info/rails; / for everything)")
	}
	n, err := a.p.store.Purge(prefix)
	if err != nil {
		return a.p.answerError(c, endpointAdmin, http.StatusInternalServerError, "purge failed", err)
	}
	usage, err := a.p.store.FileUsage()
	if err != nil {
		return a.p.answerError(c, endpointAdmin, http.StatusInternalServerError, "purged, but the file size is unknown", err)
	}
	a.p.log.Info("admin purge", "prefix", prefix, "removed", n, "file_bytes", usage.Bytes, "reusable_bytes", usage.Reusable)
	return c.JSON(PurgeResult{Removed: n, File: usage})
}

// verify answers POST /-/verify: 409 while another runs, else a stream of
// VerifyLines. The verify stops when the client goes away or the server
// drains.
func (a *admin) verify(c *fiber.Ctx) error {
	if !a.verifying.TryLock() {
		return plainError(c, http.StatusConflict, "a verify is already running")
	}
	c.Set(fiber.HeaderContentType, "application/x-ndjson")
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer a.verifying.Unlock()
		a.streamRepair(w)
	})
	return nil
}

// streamRepair runs the store's Repair and writes its VerifyLines to w.
func (a *admin) streamRepair(w *bufio.Writer) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	enc := json.NewEncoder(w)
	send := func(l VerifyLine) {
		if enc.Encode(l) != nil || w.Flush() != nil {
			cancel() // the client went away
		}
	}
	last := time.Now()
	sum, err := a.p.store.Repair(ctx, func(p cache.RepairProgress) {
		if a.p.draining.Load() {
			cancel()
		}
		if p.Problem != nil {
			a.p.log.Warn("admin verify: bad cache entry", "key", p.Problem.Key, "reason", p.Problem.Reason, "removed", p.Problem.Removed)
		}
		if p.Problem != nil || time.Since(last) >= verifyProgressEvery {
			last = time.Now()
			send(VerifyLine{RepairProgress: p})
		}
	})
	final := VerifyLine{RepairProgress: sum, Done: err == nil}
	if err == nil {
		var usage cache.FileUsage
		if usage, err = a.p.store.FileUsage(); err == nil {
			final.File = &usage
		}
	}
	if err != nil {
		final.Error = err.Error()
	}
	a.p.log.Info("admin verify", "checked", sum.Checked, "total", sum.Total, "problems", sum.Problems, "removed", sum.Removed, "err", err)
	send(final)
}

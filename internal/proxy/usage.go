package proxy

import (
	"errors"
	"github.com/gemproxy/gemproxy/internal/compactindex"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/gemproxy/gemproxy/internal/status"
)

// requestedGem returns the gem a matched route names, for the status
// page's ranking: the NAME of /info/NAME, or of the NAME-VERSION[-PLATFORM]
// file of a gem or gemspec; "" for every other route. params are the
// route's validated parameters.
func requestedGem(rt *Route, params []string) string {
	switch rt.Endpoint {
	case "info":
		return params[0]
	case "gem", "download", "quick_spec":
		for name := range compactindex.SplitFullName(params[0]) {
			return name // the shortest: names contain dashes, a best guess
		}
	}
	return ""
}

// observeUsage records who asked and for which gem: the client metrics
// from the User-Agent and, with a status page, the gem ranking, which
// counts only answers below 400 so that requests for gems that do not
// exist cannot crowd it.
func (p *Proxy) observeUsage(c *fiber.Ctx, rl *requestLog) {
	p.m.ObserveClient(c.Request().Header.UserAgent())
	if p.opts.Status != nil && rl.gem != "" && c.Response().StatusCode() < http.StatusBadRequest {
		p.opts.Status.ObserveGem(rl.gem)
	}
}

// wantsStatusPage reports whether a request for / comes from a browser
// (its Accept names text/html) and a status page is configured. Clients
// that probe / (RubyGems) never send text/html.
func (p *Proxy) wantsStatusPage(c *fiber.Ctx) bool {
	accept := utils.UnsafeString(c.Request().Header.Peek(fiber.HeaderAccept))
	return p.opts.Status != nil && strings.Contains(accept, "text/html")
}

// statusPage answers / with the HTML status page, never cached.
func (p *Proxy) statusPage(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, status.ContentType)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return p.opts.Status.Render(c.Response().BodyWriter())
}

// upstreamFailed tells the status page about an upstream failure: the
// status it answered, or why no answer came.
func (p *Proxy) upstreamFailed(code int, err error) {
	if p.opts.Status != nil {
		p.opts.Status.UpstreamFailed(p.now(), failureReason(code, err))
	}
}

// failureReason describes an upstream failure without the request URL or
// the upstream's address: the status page is public.
func failureReason(code int, err error) string {
	if err == nil {
		return "upstream answered " + strconv.Itoa(code) + " " + http.StatusText(code)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Op + ": " + oe.Err.Error()
	}
	return err.Error()
}

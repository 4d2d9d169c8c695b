package proxy

import (
	"context"
	"errors"
	"github.com/gemproxy/gemproxy/internal/breaker"
	"net/http"
	"net/url"
)

// upstreamError is a failure to get a usable answer from upstream; status is
// what the client gets when no stale copy exists.
type upstreamError struct {
	status int
	// reason is what the client is told: it must name no internal address
	// (upstream host, IP:port) or file path.
	reason string
	// err is the cause, logged but never sent to the client.
	err error
	// retryAfter is the upstream's Retry-After, passed on with a 429.
	retryAfter string
	// body and contentType, when body is set, are the upstream's own answer
	// (a 429's "Retry later"), sent verbatim instead of reason.
	body        []byte
	contentType string
	// corrupt is set when the whole body arrived and failed its integrity
	// check (verifyStaged), as opposed to a transfer that failed.
	corrupt bool
}

// Error describes the failure.
func (e *upstreamError) Error() string {
	if e.err != nil {
		return e.reason + ": " + e.err.Error()
	}
	return e.reason
}

// Unwrap returns the cause.
func (e *upstreamError) Unwrap() error { return e.err }

// isCorrupt reports whether err says that a whole body failed its
// integrity check: bytes that are wrong, not a transfer that failed.
func isCorrupt(err error) bool {
	var ue *upstreamError
	return errors.As(err, &ue) && ue.corrupt
}

// errUpstream wraps a transport error: 504 on timeouts, 502 otherwise. Its
// reason says which timeout ran out, or that the circuit is open; the
// error itself, which may name the upstream's address, is kept for the log.
func errUpstream(what string, err error) error {
	if errors.Is(err, errOfflineWrite) {
		return errOfflineWrite
	}
	status, reason := http.StatusBadGateway, "upstream "+what+" failed"
	var te *timeoutError
	switch {
	case errors.Is(err, breaker.ErrOpen):
		reason = "upstream " + breaker.ErrOpen.Error()
	case errors.As(err, &te):
		status, reason = http.StatusGatewayTimeout, te.Error()
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		status, reason = http.StatusGatewayTimeout, "upstream "+what+" timed out"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the method and URL say nothing the log does not
	}
	return &upstreamError{status: status, reason: reason, err: err}
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// errOfflineMiss answers a miss in offline mode.
var errOfflineMiss = &upstreamError{status: http.StatusGatewayTimeout, reason: "gemproxy is in offline mode and this is not in its cache"}

// errOfflineWrite answers a write in offline mode.
var errOfflineWrite = &upstreamError{status: http.StatusServiceUnavailable, reason: "gemproxy is in offline mode: writes cannot reach the upstream"}

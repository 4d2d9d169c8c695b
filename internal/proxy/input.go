package proxy

import (
	"errors"
	"net/url"
	"strings"
)

// ErrBadRequest is the sentinel wrapped by every input rejection; its
// message is safe to send to the client.
var ErrBadRequest = errors.New("bad request")

// maxPathLen bounds the request path; real paths are far shorter.
const maxPathLen = 2048

// badRequest builds a rejection with a short reason for the client.
func badRequest(reason string) error {
	return &inputError{reason}
}

// inputError is a rejection of client input; it matches ErrBadRequest.
type inputError struct{ reason string }

// Error returns the reason.
func (e *inputError) Error() string { return e.reason }

// Is makes errors.Is(err, ErrBadRequest) hold.
func (e *inputError) Is(target error) bool { return target == ErrBadRequest }

// splitRequestURI checks a raw request URI (path and query as received) and
// returns the decoded path used for routing, the raw path and the raw query
// sent upstream. It rejects path traversal in any encoding, encoded slashes
// and backslashes, NUL and control bytes, empty segments and over-long paths.
func splitRequestURI(raw string) (path, rawPath, rawQuery string, err error) {
	rawPath, rawQuery, _ = strings.Cut(raw, "?")
	if rawPath == "" || rawPath[0] != '/' {
		return "", "", "", badRequest("request path must start with /")
	}
	if len(rawPath) > maxPathLen {
		return "", "", "", badRequest("request path too long")
	}
	lower := rawPath
	if strings.IndexByte(rawPath, '%') >= 0 {
		lower = strings.ToLower(rawPath)
	}
	for _, enc := range []string{"%2f", "%5c", "%00", "%25", "%2e"} {
		if strings.Contains(lower, enc) {
			return "", "", "", badRequest("encoded slash, backslash, dot, percent or NUL in path")
		}
	}
	path, err = url.PathUnescape(rawPath)
	if err != nil {
		return "", "", "", badRequest("malformed percent-encoding in path")
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "", "", "", badRequest("control character or backslash in path")
		}
	}
	for rest := path[1:]; path != "/"; {
		seg, after, more := strings.Cut(rest, "/")
		if seg == "" || seg == "." || seg == ".." {
			return "", "", "", badRequest("empty, . or .. segment in path")
		}
		if !more {
			break
		}
		rest = after
	}
	if strings.ContainsAny(rawQuery, "\x00\r\n") || strings.Contains(strings.ToLower(rawQuery), "%00") {
		return "", "", "", badRequest("NUL or line break in query")
	}
	return path, rawPath, rawQuery, nil
}

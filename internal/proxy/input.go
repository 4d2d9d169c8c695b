package proxy

import (
	"errors"
	"net/url"
	"strings"

	"github.com/gemproxy/gemproxy/internal/compactindex"
)

// ErrBadRequest is the sentinel wrapped by every input rejection; its
// message is safe to send to the client.
var ErrBadRequest = errors.New("bad request")

// maxPathLen bounds the request path; real paths are far shorter.
const maxPathLen = 2048

// maxParamLen bounds one path segment: the longest gem name, version or
// file name accepted.
const maxParamLen = compactindex.MaxNameLen

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
// sent upstream. Runs of slashes are merged, as nginx does in front of
// rubygems.org: `gem push --host http://gemproxy:9292/` asks for
// //api/v1/gems. It rejects path traversal in any encoding, encoded slashes
// and backslashes, anything but printable ASCII (raw or decoded, so
// overlong UTF-8 never reaches upstream), ";" and "#", a trailing slash, segments
// over 255 bytes, over-long paths and queries, and queries that are not
// cleanly percent-encoded printable ASCII (a raw space would split the
// request line sent upstream).
func splitRequestURI(raw string) (path, rawPath, rawQuery string, err error) {
	rawPath, rawQuery, _ = strings.Cut(raw, "?")
	if rawPath == "" || rawPath[0] != '/' {
		return "", "", "", badRequest("request path must start with /")
	}
	if len(rawPath) > maxPathLen {
		return "", "", "", badRequest("request path too long")
	}
	if strings.Contains(rawPath, "//") {
		rawPath = mergeSlashes(rawPath)
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
		if c := path[i]; !printableASCII(c) || c == '\\' || c == ';' || c == '#' {
			return "", "", "", badRequest("control character, non-ASCII byte, backslash, ; or # in path")
		}
	}
	for rest := path[1:]; path != "/"; {
		seg, after, more := strings.Cut(rest, "/")
		if seg == "" || seg == "." || seg == ".." {
			return "", "", "", badRequest("trailing slash, . or .. segment in path")
		}
		if len(seg) > maxParamLen {
			return "", "", "", badRequest("path segment longer than 255 bytes")
		}
		if !more {
			break
		}
		rest = after
	}
	if err := checkQuery(rawQuery); err != nil {
		return "", "", "", err
	}
	return path, rawPath, rawQuery, nil
}

// maxQueryLen bounds the raw query string; the API's real queries (search
// terms, pages, dates) are far shorter.
const maxQueryLen = 1024

// checkQuery accepts a raw query made of printable ASCII with well-formed
// percent-escapes, no encoded NUL and no fragment.
func checkQuery(q string) error {
	if len(q) > maxQueryLen {
		return badRequest("query string too long")
	}
	for i := 0; i < len(q); i++ {
		switch c := q[i]; {
		case !printableASCII(c) || c == '#':
			return badRequest("space, control character, non-ASCII byte or # in query")
		case c == '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return badRequest("malformed percent-encoding in query")
			}
			if q[i+1] == '0' && q[i+2] == '0' {
				return badRequest("NUL in query")
			}
		}
	}
	return nil
}

// printableASCII reports whether c is a visible ASCII character (no space).
func printableASCII(c byte) bool { return c > ' ' && c < 0x7f }

// isHex reports whether c is a hexadecimal digit.
func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// mergeSlashes replaces every run of slashes in p with one.
func mergeSlashes(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

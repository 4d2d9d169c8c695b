package accesslog

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Time layouts, the ones slog's handlers use.
const (
	// textTime is slog.TextHandler's layout: RFC 3339 with milliseconds.
	textTime = "2006-01-02T15:04:05.000Z07:00"
	// jsonTime is slog.JSONHandler's layout.
	jsonTime = "2006-01-02T15:04:05.999999999Z07:00"
)

// durationDigits is the number of decimals of duration_s: microseconds.
const durationDigits = 6

// appendText appends e as a slog.TextHandler line to b.
func appendText(b []byte, e *Entry) []byte {
	b = append(b, "time="...)
	b = e.Time.AppendFormat(b, textTime)
	b = append(b, " level=INFO msg=request method="...)
	b = appendTextValue(b, e.Method)
	b = append(b, " endpoint="...)
	b = appendTextValue(b, e.Endpoint)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, " bytes="...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, " duration_s="...)
	b = appendSeconds(b, e)
	b = append(b, " cache="...)
	b = appendTextValue(b, e.Cache)
	return append(b, '\n')
}

// appendJSON appends e as a slog.JSONHandler line to b.
func appendJSON(b []byte, e *Entry) []byte {
	b = append(b, `{"time":"`...)
	b = e.Time.AppendFormat(b, jsonTime)
	b = append(b, `","level":"INFO","msg":"request","method":`...)
	b = appendJSONString(b, e.Method)
	b = append(b, `,"endpoint":`...)
	b = appendJSONString(b, e.Endpoint)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, `,"duration_s":`...)
	b = appendSeconds(b, e)
	b = append(b, `,"cache":`...)
	b = appendJSONString(b, e.Cache)
	return append(b, "}\n"...)
}

// appendSeconds appends e.Duration in seconds with microsecond precision.
func appendSeconds(b []byte, e *Entry) []byte {
	return strconv.AppendFloat(b, e.Duration.Seconds(), 'f', durationDigits, 64)
}

// appendTextValue appends s bare, or Go-quoted when slog.TextHandler
// would quote it.
func appendTextValue(b []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

// needsQuoting reports whether slog.TextHandler quotes the value s: when
// it is empty, or holds a space, '=', '"', a control byte below 0x20,
// invalid UTF-8, or a rune that is a space or not printable.
func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == '=' || c == '"' {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// hexDigits are the digits of \u escapes.
const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control bytes escaped, invalid UTF-8 replaced by U+FFFD, and U+2028 and
// U+2029 escaped, as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			b = appendJSONByte(b, c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// appendJSONByte appends the ASCII byte c of a JSON string, escaped when
// JSON requires it.
func appendJSONByte(b []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(b, '\\', c)
	case '\n':
		return append(b, `\n`...)
	case '\r':
		return append(b, `\r`...)
	case '\t':
		return append(b, `\t`...)
	}
	if c < ' ' {
		return append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
	}
	return append(b, c)
}

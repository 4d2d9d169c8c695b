package testupstream

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// kv is one ordered key/value pair of an omap.
type kv struct {
	k string // key
	v any    // value: omap, []any, []string, string, int, int64, bool or nil
}

// omap is an ordered map that encodes to JSON and YAML with its keys in
// insertion order, as Ruby hashes do.
type omap []kv

// MarshalJSON implements json.Marshaler.
func (m omap) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range m {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(e.k)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(e.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// get returns the value of key k.
func (m omap) get(k string) (any, bool) {
	for _, e := range m {
		if e.k == k {
			return e.v, true
		}
	}
	return nil, false
}

// merge returns m with the entries of o merged in as Ruby's Hash#merge does:
// existing keys keep their position and take o's value, new keys are
// appended in o's order.
func (m omap) merge(o omap) omap {
	out := append(omap{}, m...)
	for _, e := range o {
		found := false
		for i := range out {
			if out[i].k == e.k {
				out[i].v = e.v
				found = true
				break
			}
		}
		if !found {
			out = append(out, e)
		}
	}
	return out
}

// toYAML renders v as Ruby's to_yaml (Psych) renders the equivalent
// Hash/Array of JSON-like values.
func toYAML(v any) string {
	var b strings.Builder
	b.WriteString("---")
	switch x := v.(type) {
	case omap:
		if len(x) == 0 {
			b.WriteString(" {}\n")
			return b.String()
		}
		b.WriteString("\n")
		yamlMap(&b, x, 0)
	case []any:
		if len(x) == 0 {
			b.WriteString(" []\n")
			return b.String()
		}
		b.WriteString("\n")
		yamlSeq(&b, x, 0)
	default:
		b.WriteString(" " + yamlValue(v, 4, 2) + "\n")
	}
	return b.String()
}

// yamlValue renders a scalar value.
func yamlValue(v any, col, indent int) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return yamlScalar(x, col, indent)
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	default:
		js, _ := json.Marshal(x)
		return yamlScalar(string(js), col, indent)
	}
}

// asSeq converts slice-like values to []any.
func asSeq(v any) ([]any, bool) {
	switch x := v.(type) {
	case []any:
		return x, true
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out, true
	case []omap:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out, true
	}
	return nil, false
}

// yamlMap writes the entries of m with keys at column indent.
func yamlMap(b *strings.Builder, m omap, indent int) {
	pad := strings.Repeat(" ", indent)
	for _, e := range m {
		if atLineStart(b) {
			b.WriteString(pad)
		}
		key := yamlScalar(e.k, indent, indent+2)
		b.WriteString(key + ":")
		yamlAfter(b, e.v, indent, indent+len(key)+2, false)
	}
}

// yamlSeq writes the items of s with dashes at column indent.
func yamlSeq(b *strings.Builder, s []any, indent int) {
	pad := strings.Repeat(" ", indent)
	for _, it := range s {
		if atLineStart(b) {
			b.WriteString(pad)
		}
		b.WriteString("-")
		yamlAfter(b, it, indent, indent+2, true)
	}
}

// yamlAfter writes the value following "key:" (inSeq false) or "-" (inSeq
// true) whose owner sits at column indent; col is the value's column.
func yamlAfter(b *strings.Builder, v any, indent, col int, inSeq bool) {
	if m, ok := v.(omap); ok {
		switch {
		case len(m) == 0:
			b.WriteString(" {}\n")
		case inSeq:
			b.WriteString(" ")
			yamlMap(b, m, indent+2)
		default:
			b.WriteString("\n")
			yamlMap(b, m, indent+2)
		}
		return
	}
	if s, ok := asSeq(v); ok {
		switch {
		case len(s) == 0:
			b.WriteString(" []\n")
		case inSeq:
			b.WriteString(" ")
			yamlSeq(b, s, indent+2)
		default:
			b.WriteString("\n")
			yamlSeq(b, s, indent)
		}
		return
	}
	if v == nil {
		b.WriteString("\n")
		return
	}
	b.WriteString(" " + yamlValue(v, col, indent+2) + "\n")
}

// atLineStart reports whether b is empty or ends with a newline.
func atLineStart(b *strings.Builder) bool {
	return b.Len() == 0 || strings.HasSuffix(b.String(), "\n")
}

package rubyfmt

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Hash is an ordered map that ToYAML renders as a Ruby Hash, entries in
// their order.
type Hash interface {
	// Len returns the number of entries.
	Len() int
	// Entry returns the key and value of entry i; values are Hash, []any,
	// []string, string, int, int64, bool or nil (anything else is rendered
	// as its JSON text).
	Entry(i int) (key string, value any)
}

// ToYAML renders v as Ruby's to_yaml (Psych) renders the equivalent
// Hash/Array of JSON-like values.
func ToYAML(v any) string {
	var b strings.Builder
	b.WriteString("---")
	switch x := v.(type) {
	case Hash:
		if x.Len() == 0 {
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
	}
	return nil, false
}

// yamlMap writes the entries of m with keys at column indent.
func yamlMap(b *strings.Builder, m Hash, indent int) {
	pad := strings.Repeat(" ", indent)
	for i := range m.Len() {
		k, v := m.Entry(i)
		if atLineStart(b) {
			b.WriteString(pad)
		}
		key := yamlScalar(k, indent, indent+2)
		b.WriteString(key + ":")
		yamlAfter(b, v, indent, indent+len(key)+2, false)
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
	if m, ok := v.(Hash); ok {
		switch {
		case m.Len() == 0:
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

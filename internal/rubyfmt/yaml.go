package rubyfmt

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// This file holds a minimal YAML emitter that quotes scalars the way Psych 4
// (Ruby 3.1) + libyaml do, and the accessors ParseGem reads gemspecs with
// (Psych and Syck era) once go.yaml.in/yaml/v3 has parsed them.

// yamlBestWidth is libyaml's default preferred line width.
const yamlBestWidth = 80

// Regular expressions of Psych::ScalarScanner#tokenize (Psych 4.0); each
// recognizes one non-String scalar form (startsNonWord is Psych's
// double-quote rule).
var (
	psychStringish = regexp.MustCompile(`^[^\d.:-]?[[:alpha:]_\s!@#$%^&*(){}<>|/\\~;=]+`)
	psychTime      = regexp.MustCompile(`^-?\d{4}-\d{1,2}-\d{1,2}(?:[Tt]|\s+)\d{1,2}:\d\d:\d\d(?:\.\d*)?(?:\s*(?:Z|[-+]\d{1,2}:?(?:\d\d)?))?$`)
	psychDate      = regexp.MustCompile(`^\d{4}-(?:1[012]|0\d|\d)-(?:[12]\d|3[01]|0\d|\d)$`)
	psychInf       = regexp.MustCompile(`(?i)^[-+]?\.inf$`)
	psychNaN       = regexp.MustCompile(`(?i)^\.nan$`)
	psychSexInt    = regexp.MustCompile(`^[-+]?[0-9][0-9_]*(:[0-5]?[0-9]){1,2}$`)
	psychSexFloat  = regexp.MustCompile(`^[-+]?[0-9][0-9_]*(:[0-5]?[0-9]){1,2}\.[0-9_]*$`)
	psychFloat     = regexp.MustCompile(`^(?:[-+]?([0-9][0-9_,]*)?\.[0-9]*([eE][-+][0-9]+)?)$`)
	psychInt       = regexp.MustCompile(`^(?:[-+]?0b[0-1_,]+|[-+]?0[0-7_,]+|[-+]?(?:0|[1-9](?:[0-9]|,[0-9]|_[0-9])*)|[-+]?0x[0-9a-fA-F_,]+)$`)
	psychBoolTrue  = regexp.MustCompile(`(?i)^(yes|true|on)$`)
	psychBoolFalse = regexp.MustCompile(`(?i)^(no|false|off)$`)
	psychNull      = regexp.MustCompile(`(?i)^null$`)
	psychOctal89   = regexp.MustCompile(`^0[0-7]*[89]$`)
	startsNonWord  = regexp.MustCompile(`^[^\p{L}\p{N}_][^"]*$`)
)

// psychTokenizesAsString reports whether Psych would read s back as a String
// (Psych::ScalarScanner#tokenize returns a String).
func psychTokenizesAsString(s string) bool {
	if s == "" {
		return false
	}
	if psychStringish.MatchString(s) || strings.Contains(s, "\n") {
		if len(s) > 5 {
			return true
		}
		switch {
		case !strings.ContainsAny(strings.ToLower(s[:1]), "ytonf~"):
			return true
		case s == "~" || psychNull.MatchString(s), psychBoolTrue.MatchString(s), psychBoolFalse.MatchString(s):
			return false
		default:
			return true
		}
	}
	switch {
	case psychTime.MatchString(s), psychDate.MatchString(s), psychInf.MatchString(s), psychNaN.MatchString(s):
		return false
	case strings.HasPrefix(s, ":") && len(s) > 1:
		return false
	case psychSexInt.MatchString(s), psychSexFloat.MatchString(s):
		return false
	case psychFloat.MatchString(s):
		return s == "." || s == "+." || s == "-."
	case psychInt.MatchString(s):
		return false
	}
	return true
}

// yamlPrintable reports whether libyaml considers r printable.
func yamlPrintable(r rune) bool {
	switch {
	case r == 0x0A, r >= 0x20 && r <= 0x7E, r == 0x85:
		return true
	case r >= 0xA0 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD && r != 0xFEFF, r >= 0x10000 && r <= 0x10FFFF:
		return true
	}
	return false
}

// yamlPlainAllowed approximates libyaml's analysis of whether s may be
// written as a plain scalar in block context.
func yamlPlainAllowed(s string) bool {
	if s == "" || strings.HasPrefix(s, "---") || strings.HasPrefix(s, "...") {
		return false
	}
	if strings.ContainsAny(s[:1], "#,[]{}&*!|>'\"%@`?:- \t") {
		// Indicators at the start ('-', '?', ':' only when followed by a
		// space; psych already double-quotes all of them).
		if !(strings.ContainsAny(s[:1], "-?:") && len(s) > 1 && s[1] != ' ') {
			return false
		}
	}
	if strings.HasSuffix(s, " ") || strings.HasSuffix(s, ":") || strings.Contains(s, ": ") ||
		strings.Contains(s, " #") || strings.Contains(s, "\n") {
		return false
	}
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !yamlPrintable(r) {
			return false
		}
	}
	return true
}

// yamlSingleAllowed reports whether libyaml may single-quote s.
func yamlSingleAllowed(s string) bool {
	if !utf8.ValidString(s) || strings.Contains(s, "\n") {
		return false
	}
	for _, r := range s {
		if !yamlPrintable(r) {
			return false
		}
	}
	return true
}

// yamlScalar renders s as Psych would emit a String value starting at column
// col inside a node whose continuation indent is indent.
func yamlScalar(s string, col, indent int) string {
	switch {
	case s == "":
		return "''"
	case strings.Contains(strings.TrimSuffix(s, "\n"), "\n"):
		if yamlSingleAllowed(strings.ReplaceAll(s, "\n", " ")) && !strings.HasPrefix(s, " ") && !strings.HasPrefix(s, "\n") {
			return yamlLiteral(s, indent)
		}
		return yamlDouble(s)
	case s == "=" || s == "<<":
		return "'" + s + "'"
	case s == "y" || s == "Y" || s == "n" || s == "N":
		return `"` + s + `"`
	case startsNonWord.MatchString(s):
		return yamlDouble(s)
	case !psychTokenizesAsString(s) || psychOctal89.MatchString(s):
		if yamlSingleAllowed(s) {
			return yamlSingle(s, col, indent)
		}
		return yamlDouble(s)
	case yamlPlainAllowed(s):
		return yamlPlain(s, col, indent)
	case yamlSingleAllowed(s):
		return yamlSingle(s, col, indent)
	default:
		return yamlDouble(s)
	}
}

// yamlPlain writes a plain scalar, folding at spaces past the best width as
// libyaml's yaml_emitter_write_plain_scalar does.
func yamlPlain(s string, col, indent int) string {
	return yamlFolded(s, col, indent, false)
}

// yamlSingle writes a single-quoted scalar with libyaml's folding rules.
func yamlSingle(s string, col, indent int) string {
	return yamlFolded(s, col, indent, true)
}

// yamlFolded writes s as libyaml writes a plain (quoted false) or
// single-quoted scalar: a lone space past the best width becomes a line
// break and the indent. A single-quoted scalar is wrapped in quotes, doubles
// each quote inside, and never breaks at its first character.
func yamlFolded(s string, col, indent int, quoted bool) string {
	var b strings.Builder
	column := col
	if quoted {
		b.WriteByte('\'')
		column++
	}
	spaces := false
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == ' ' {
			if !spaces && column > yamlBestWidth && (!quoted || i != 0) && i+1 < len(s) && s[i+1] != ' ' {
				b.WriteString("\n" + strings.Repeat(" ", indent))
				column = indent
			} else {
				b.WriteByte(' ')
				column++
			}
			spaces = true
		} else {
			if quoted && r == '\'' {
				b.WriteByte('\'')
				column++
			}
			b.WriteString(s[i : i+n])
			column++
			spaces = false
		}
		i += n
	}
	if quoted {
		b.WriteByte('\'')
	}
	return b.String()
}

// yamlDouble writes a double-quoted scalar with YAML escapes (no folding).
func yamlDouble(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02X`, s[i])
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == 0:
			b.WriteString(`\0`)
		case r == '\a':
			b.WriteString(`\a`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\v':
			b.WriteString(`\v`)
		case r == '\f':
			b.WriteString(`\f`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == 0x1B:
			b.WriteString(`\e`)
		case r == 0x85:
			b.WriteString(`\N`)
		case r == 0xA0:
			b.WriteString(`\_`)
		case r == 0x2028:
			b.WriteString(`\L`)
		case r == 0x2029:
			b.WriteString(`\P`)
		case yamlPrintable(r) && r != 0x0A:
			b.WriteString(s[i : i+n])
		case r <= 0xFF:
			fmt.Fprintf(&b, `\x%02X`, r)
		case r <= 0xFFFF:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			fmt.Fprintf(&b, `\U%08X`, r)
		}
		i += n
	}
	b.WriteByte('"')
	return b.String()
}

// yamlLiteral writes a literal block scalar ("|", "|-" or "|+").
func yamlLiteral(s string, indent int) string {
	var b strings.Builder
	b.WriteByte('|')
	switch {
	case !strings.HasSuffix(s, "\n"):
		b.WriteByte('-')
	case strings.HasSuffix(s, "\n\n"):
		b.WriteByte('+')
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	pad := strings.Repeat(" ", indent)
	for _, l := range lines {
		b.WriteByte('\n')
		if l != "" {
			b.WriteString(pad + l)
		}
	}
	return b.String()
}

// parseYAML parses a single YAML document and returns its root node (nil
// for an empty document). Tags, Ruby's !ruby/object:... included, stay on
// the nodes and are ignored by the accessors below.
func parseYAML(src string) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		return nil, fmt.Errorf("rubyfmt: yaml: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	return resolve(doc.Content[0]), nil
}

// resolve follows an alias (*anchor) to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is missing or a null scalar ("", "~", "null").
func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// yamlGet returns the value of mapping key k in n, or nil.
func yamlGet(n *yaml.Node, k string) *yaml.Node {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if resolve(n.Content[i]).Value == k {
			return resolve(n.Content[i+1])
		}
	}
	return nil
}

// yamlScalarValue returns the string of scalar n ("" for null and for
// anything that is not a scalar).
func yamlScalarValue(n *yaml.Node) string {
	n = resolve(n)
	if isNull(n) || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

// yamlItems returns the items of sequence n, aliases resolved (nil if n is
// not a sequence).
func yamlItems(n *yaml.Node) []*yaml.Node {
	n = resolve(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, it := range n.Content {
		out[i] = resolve(it)
	}
	return out
}

package rubyfmt

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file holds a minimal YAML emitter that quotes scalars the way Psych 4
// (Ruby 3.1) + libyaml do, and a minimal block-YAML parser able to read the
// gemspecs found in real .gem files (Psych and Syck era).

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
	var b strings.Builder
	spaces := false
	column := col
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == ' ' {
			if !spaces && column > yamlBestWidth && i+1 < len(s) && s[i+1] != ' ' {
				b.WriteString("\n" + strings.Repeat(" ", indent))
				column = indent
			} else {
				b.WriteByte(' ')
				column++
			}
			spaces = true
		} else {
			b.WriteString(s[i : i+n])
			column++
			spaces = false
		}
		i += n
	}
	return b.String()
}

// yamlSingle writes a single-quoted scalar with libyaml's folding rules.
func yamlSingle(s string, col, indent int) string {
	var b strings.Builder
	b.WriteByte('\'')
	column := col + 1
	spaces := false
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == ' ' {
			if !spaces && column > yamlBestWidth && i != 0 && i != len(s)-1 && s[i+1] != ' ' {
				b.WriteString("\n" + strings.Repeat(" ", indent))
				column = indent
			} else {
				b.WriteByte(' ')
				column++
			}
			spaces = true
		} else {
			if r == '\'' {
				b.WriteByte('\'')
				column++
			}
			b.WriteString(s[i : i+n])
			column++
			spaces = false
		}
		i += n
	}
	b.WriteByte('\'')
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

// ---------------------------------------------------------------------------
// Parser

// ynodeKind is the kind of a parsed YAML node.
type ynodeKind int

// YAML node kinds.
const (
	yNull   ynodeKind = iota // null / missing value
	yScalar                  // string scalar
	yMap                     // block or flow mapping
	ySeq                     // block or flow sequence
)

// ynode is a parsed YAML node.
type ynode struct {
	kind ynodeKind // node kind
	str  string    // scalar value
	keys []string  // mapping keys, parallel to vals
	vals []*ynode  // mapping values or sequence items
}

// get returns the value of mapping key k, or nil.
func (n *ynode) get(k string) *ynode {
	if n == nil || n.kind != yMap {
		return nil
	}
	for i, key := range n.keys {
		if key == k {
			return n.vals[i]
		}
	}
	return nil
}

// scalar returns the scalar string of n ("" for anything else).
func (n *ynode) scalar() string {
	if n == nil || n.kind != yScalar {
		return ""
	}
	return n.str
}

// yline is one source line: its indentation and trimmed content.
type yline struct {
	indent int    // leading spaces
	text   string // content without indentation and trailing blanks
	raw    string // the original line
}

// yparser parses the block-YAML subset used by gemspecs.
type yparser struct {
	lines   []yline           // source lines
	pos     int               // current line
	anchors map[string]*ynode // &anchor -> node
	depth   int               // recursion depth guard
}

// parseYAML parses a single YAML document.
func parseYAML(src string) (n *ynode, err error) {
	p := &yparser{anchors: map[string]*ynode{}}
	for _, raw := range strings.Split(strings.ReplaceAll(src, "\r\n", "\n"), "\n") {
		t := strings.TrimLeft(raw, " ")
		p.lines = append(p.lines, yline{indent: len(raw) - len(t), text: strings.TrimRight(t, " \t"), raw: raw})
	}
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(yamlError); ok {
				n, err = nil, e
				return
			}
			panic(r)
		}
	}()
	p.skip()
	if p.pos < len(p.lines) && strings.HasPrefix(p.lines[p.pos].text, "---") {
		rest := strings.TrimSpace(strings.TrimPrefix(p.lines[p.pos].text, "---"))
		rest = stripProps(p, rest, nil)
		if rest != "" {
			p.lines[p.pos] = yline{indent: 4, text: rest}
			return p.block(-1), nil
		}
		p.pos++
	}
	return p.child(-1, false), nil
}

// yamlError is the panic value used for parse errors.
type yamlError string

// Error implements error.
func (e yamlError) Error() string { return "rubyfmt: yaml: " + string(e) }

// fail aborts parsing.
func (p *yparser) fail(format string, args ...any) {
	panic(yamlError(fmt.Sprintf("line %d: ", p.pos+1) + fmt.Sprintf(format, args...)))
}

// skip advances past blank and comment lines.
func (p *yparser) skip() {
	for p.pos < len(p.lines) {
		t := p.lines[p.pos].text
		if t == "" || strings.HasPrefix(t, "#") {
			p.pos++
			continue
		}
		if t == "..." {
			p.pos = len(p.lines)
		}
		return
	}
}

// child parses the node on the following lines indented more than parent
// (or, when seqSame, a sequence at exactly parent's indentation).
func (p *yparser) child(parent int, seqSame bool) *ynode {
	p.skip()
	if p.pos >= len(p.lines) {
		return &ynode{kind: yNull}
	}
	l := p.lines[p.pos]
	if l.indent > parent || (seqSame && l.indent == parent && isSeqItem(l.text)) {
		return p.block(l.indent)
	}
	return &ynode{kind: yNull}
}

// isSeqItem reports whether t starts a block sequence entry.
func isSeqItem(t string) bool { return t == "-" || strings.HasPrefix(t, "- ") }

// mapKey splits "key: value" / "key:" into key and the rest; ok is false if
// t is not a mapping entry.
func mapKey(t string) (key, rest string, ok bool) {
	if t == "" || strings.HasPrefix(t, "- ") || t == "-" {
		return "", "", false
	}
	if t[0] == '"' || t[0] == '\'' {
		q := t[0]
		for i := 1; i < len(t); i++ {
			if t[i] == q {
				if q == '\'' && i+1 < len(t) && t[i+1] == '\'' {
					i++
					continue
				}
				if q == '"' && t[i-1] == '\\' {
					continue
				}
				after := t[i+1:]
				if after == ":" || strings.HasPrefix(after, ": ") {
					k, err := unquote(t[:i+1])
					if err != nil {
						return "", "", false
					}
					return k, strings.TrimSpace(strings.TrimPrefix(after, ":")), true
				}
				return "", "", false
			}
		}
		return "", "", false
	}
	if strings.ContainsAny(t[:1], "[{!&*|>%@`") {
		return "", "", false
	}
	if i := strings.Index(t, ": "); i > 0 {
		return t[:i], strings.TrimSpace(t[i+2:]), true
	}
	if strings.HasSuffix(t, ":") && len(t) > 1 {
		return t[:len(t)-1], "", true
	}
	return "", "", false
}

// block parses the node starting at the current line, whose indentation is ind.
func (p *yparser) block(ind int) *ynode {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > 200 {
		p.fail("nesting too deep")
	}
	p.skip()
	l := p.lines[p.pos]
	if isSeqItem(l.text) {
		return p.seq(l.indent)
	}
	if _, _, ok := mapKey(l.text); ok {
		return p.mapping(l.indent)
	}
	p.pos++
	return p.scalarRest(l.text, ind)
}

// seq parses a block sequence whose dashes are at column ind.
func (p *yparser) seq(ind int) *ynode {
	n := &ynode{kind: ySeq}
	for {
		p.skip()
		if p.pos >= len(p.lines) {
			return n
		}
		l := p.lines[p.pos]
		if l.indent != ind || !isSeqItem(l.text) {
			return n
		}
		rest := strings.TrimLeft(l.text[1:], " ")
		col := ind + (len(l.text) - len(rest))
		n.vals = append(n.vals, p.inline(rest, col, ind, false))
	}
}

// mapping parses a block mapping whose keys are at column ind.
func (p *yparser) mapping(ind int) *ynode {
	n := &ynode{kind: yMap}
	for {
		p.skip()
		if p.pos >= len(p.lines) {
			return n
		}
		l := p.lines[p.pos]
		if l.indent != ind {
			if l.indent > ind {
				p.fail("unexpected indentation")
			}
			return n
		}
		k, rest, ok := mapKey(l.text)
		if !ok {
			return n
		}
		col := ind + len(l.text) - len(rest)
		n.keys = append(n.keys, k)
		n.vals = append(n.vals, p.inline(rest, col, ind, true))
	}
}

// stripProps removes leading tags (!x) and anchors (&x) from rest; the
// anchor name, if any, is stored into *anchor.
func stripProps(p *yparser, rest string, anchor *string) string {
	for rest != "" && (rest[0] == '!' || rest[0] == '&') {
		end := strings.IndexByte(rest, ' ')
		tok := rest
		if end >= 0 {
			tok = rest[:end]
			rest = strings.TrimLeft(rest[end:], " ")
		} else {
			rest = ""
		}
		if tok[0] == '&' && anchor != nil {
			*anchor = tok[1:]
		}
	}
	return rest
}

// inline parses the value that follows "key:" or "- " on the current line
// (rest, starting at column col); parent is the indentation of the owning
// key or dash. The current line is consumed.
func (p *yparser) inline(rest string, col, parent int, inMap bool) *ynode {
	var anchor string
	rest = stripProps(p, rest, &anchor)
	n := p.inlineValue(rest, col, parent, inMap)
	if anchor != "" {
		p.anchors[anchor] = n
	}
	return n
}

// inlineValue implements inline after properties were stripped.
func (p *yparser) inlineValue(rest string, col, parent int, inMap bool) *ynode {
	switch {
	case rest == "" || strings.HasPrefix(rest, "#"):
		p.pos++
		return p.child(parent, inMap)
	case rest[0] == '*':
		p.pos++
		if a, ok := p.anchors[rest[1:]]; ok {
			return a
		}
		p.fail("unknown alias %s", rest)
	case rest[0] == '|' || rest[0] == '>':
		p.pos++
		return p.blockScalar(rest, parent)
	case rest[0] == '[' || rest[0] == '{':
		p.pos++
		return parseFlow(p, rest)
	case !inMap && isSeqItem(rest):
		p.lines[p.pos] = yline{indent: col, text: rest}
		return p.seq(col)
	case !inMap:
		if _, _, ok := mapKey(rest); ok {
			p.lines[p.pos] = yline{indent: col, text: rest}
			return p.mapping(col)
		}
	}
	p.pos++
	return p.scalarRest(rest, parent)
}

// scalarRest parses a flow scalar (plain or quoted) that starts with first
// and may continue on lines indented more than parent.
func (p *yparser) scalarRest(first string, parent int) *ynode {
	text := first
	if first[0] == '"' || first[0] == '\'' {
		for !quoteClosed(text) {
			if p.pos >= len(p.lines) {
				p.fail("unterminated quoted scalar")
			}
			t := strings.TrimSpace(p.lines[p.pos].raw)
			if t == "" {
				text += "\n"
			} else if strings.HasSuffix(text, "\n") {
				text += t
			} else {
				text += " " + t
			}
			p.pos++
		}
		s, err := unquote(strings.TrimSpace(stripComment(text, true)))
		if err != nil {
			p.fail("%v", err)
		}
		return &ynode{kind: yScalar, str: s}
	}
	text = stripComment(text, false)
	for p.pos < len(p.lines) {
		l := p.lines[p.pos]
		if l.text != "" && (l.indent <= parent || strings.HasPrefix(l.text, "#")) {
			break
		}
		if l.text == "" {
			// Blank line inside a multi-line plain scalar becomes a newline.
			j := p.pos
			for j < len(p.lines) && p.lines[j].text == "" {
				j++
			}
			if j >= len(p.lines) || p.lines[j].indent <= parent {
				break
			}
			text += strings.Repeat("\n", j-p.pos)
			p.pos = j
			continue
		}
		if strings.HasSuffix(text, "\n") {
			text += stripComment(l.text, false)
		} else {
			text += " " + stripComment(l.text, false)
		}
		p.pos++
	}
	if text == "~" || text == "null" || text == "Null" || text == "NULL" {
		return &ynode{kind: yNull}
	}
	return &ynode{kind: yScalar, str: text}
}

// quoteClosed reports whether the quoted scalar in s is terminated.
func quoteClosed(s string) bool {
	q := s[0]
	for i := 1; i < len(s); i++ {
		switch {
		case q == '"' && s[i] == '\\':
			i++
		case s[i] == q:
			if q == '\'' && i+1 < len(s) && s[i+1] == '\'' {
				i++
				continue
			}
			return true
		}
	}
	return false
}

// stripComment removes a trailing " # comment" from a plain (or, when
// quoted, from after the closing quote of a) scalar.
func stripComment(s string, quoted bool) string {
	start := 0
	if quoted {
		q := s[0]
		for i := 1; i < len(s); i++ {
			if q == '"' && s[i] == '\\' {
				i++
				continue
			}
			if s[i] == q {
				if q == '\'' && i+1 < len(s) && s[i+1] == '\'' {
					i++
					continue
				}
				start = i
				break
			}
		}
	}
	if i := strings.Index(s[start:], " #"); i >= 0 {
		return strings.TrimRight(s[:start+i], " ")
	}
	return s
}

// unquote decodes a single- or double-quoted YAML scalar.
func unquote(s string) (string, error) {
	if len(s) < 2 || s[len(s)-1] != s[0] {
		return "", fmt.Errorf("bad quoted scalar %q", s)
	}
	body := s[1 : len(s)-1]
	if s[0] == '\'' {
		return strings.ReplaceAll(body, "''", "'"), nil
	}
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(body) {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		switch body[i] {
		case '0':
			b.WriteByte(0)
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 't', '\t':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'v':
			b.WriteByte('\v')
		case 'f':
			b.WriteByte('\f')
		case 'r':
			b.WriteByte('\r')
		case 'e':
			b.WriteByte(0x1B)
		case ' ', '"', '/', '\\':
			b.WriteByte(body[i])
		case 'N':
			b.WriteRune(0x85)
		case '_':
			b.WriteRune(0xA0)
		case 'L':
			b.WriteRune(0x2028)
		case 'P':
			b.WriteRune(0x2029)
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[body[i]]
			if i+1+n > len(body) {
				return "", fmt.Errorf("bad escape in %q", s)
			}
			v, err := strconv.ParseUint(body[i+1:i+1+n], 16, 32)
			if err != nil {
				return "", fmt.Errorf("bad escape in %q", s)
			}
			if body[i] == 'x' {
				b.WriteByte(byte(v))
			} else {
				b.WriteRune(rune(v))
			}
			i += n
		default:
			return "", fmt.Errorf("bad escape \\%c in %q", body[i], s)
		}
	}
	return b.String(), nil
}

// blockScalar reads a literal (|) or folded (>) block scalar whose header is
// hdr; content lines are those indented more than parent.
func (p *yparser) blockScalar(hdr string, parent int) *ynode {
	literal := hdr[0] == '|'
	chomp := byte(0)
	explicit := 0
	for _, c := range []byte(strings.TrimSpace(stripComment(hdr[1:], false))) {
		switch {
		case c == '-' || c == '+':
			chomp = c
		case c >= '1' && c <= '9':
			explicit = int(c - '0')
		}
	}
	var lines []string
	contentIndent := -1
	if explicit > 0 {
		contentIndent = parent + explicit
		if parent < 0 {
			contentIndent = explicit
		}
	}
	for p.pos < len(p.lines) {
		l := p.lines[p.pos]
		if l.text == "" {
			lines = append(lines, "")
			p.pos++
			continue
		}
		if l.indent <= parent {
			break
		}
		if contentIndent < 0 {
			contentIndent = l.indent
		}
		if l.indent < contentIndent {
			break
		}
		lines = append(lines, strings.TrimRight(l.raw[contentIndent:], "\r"))
		p.pos++
	}
	// Trailing blank lines belong to chomping.
	trailing := 0
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
		trailing++
	}
	var body string
	if literal {
		body = strings.Join(lines, "\n")
	} else {
		var b strings.Builder
		for i, l := range lines {
			if i > 0 {
				prev := lines[i-1]
				switch {
				case l == "" || prev == "":
					b.WriteString("\n")
				case strings.HasPrefix(l, " ") || strings.HasPrefix(prev, " "):
					b.WriteString("\n")
				default:
					b.WriteString(" ")
				}
			}
			b.WriteString(l)
		}
		body = b.String()
	}
	if len(lines) > 0 {
		switch chomp {
		case '-':
		case '+':
			body += strings.Repeat("\n", trailing+1)
		default:
			body += "\n"
		}
	}
	return &ynode{kind: yScalar, str: body}
}

// parseFlow parses a one-line flow collection of scalars ("[]", "{}",
// "[a, 'b']", "{k: v}").
func parseFlow(p *yparser, s string) *ynode {
	s = strings.TrimSpace(stripComment(s, false))
	open, closing := s[0], byte(']')
	if open == '{' {
		closing = '}'
	}
	if len(s) < 2 || s[len(s)-1] != closing {
		p.fail("unsupported flow collection %q", s)
	}
	inner := strings.TrimSpace(s[1 : len(s)-1])
	n := &ynode{kind: ySeq}
	if open == '{' {
		n.kind = yMap
	}
	if inner == "" {
		return n
	}
	for _, item := range splitFlow(inner) {
		item = strings.TrimSpace(item)
		if open == '{' {
			k, v, ok := mapKey(item)
			if !ok {
				p.fail("bad flow mapping entry %q", item)
			}
			n.keys = append(n.keys, k)
			n.vals = append(n.vals, flowScalar(v))
		} else {
			n.vals = append(n.vals, flowScalar(item))
		}
	}
	return n
}

// splitFlow splits a flow collection body on top-level commas.
func splitFlow(s string) []string {
	var out []string
	var quote byte
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == ',':
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// flowScalar converts one flow item into a scalar node.
func flowScalar(s string) *ynode {
	s = strings.TrimSpace(s)
	if s == "" || s == "~" || s == "null" {
		return &ynode{kind: yNull}
	}
	if s[0] == '"' || s[0] == '\'' {
		if u, err := unquote(s); err == nil {
			return &ynode{kind: yScalar, str: u}
		}
	}
	return &ynode{kind: yScalar, str: s}
}

package main

import (
	"reflect"
	"regexp"
	"strings"

	"github.com/gemproxy/gemproxy/internal/proxy"
)

// knownKeys lists every dotted key the configuration file accepts, from the
// toml tags of Config (the [class.CLASS] tables expanded per class).
func knownKeys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			switch {
			case f.Type == reflect.TypeFor[ClassTables]():
				for _, c := range proxy.Classes {
					walk(reflect.TypeFor[ClassConfig](), prefix+tag+"."+string(c)+".")
				}
			case f.Type.Kind() == reflect.Struct && f.Type.NumField() > 0 && f.Type.PkgPath() == t.PkgPath():
				walk(f.Type, prefix+tag+".")
			default:
				keys = append(keys, prefix+tag)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return keys
}

// suggestKey returns the known key closest to the unknown one ("maxsize"
// → "max_size", "server.idle_timout" → "server.idle_timeout"), or "" when
// none is close: the same key without its punctuation, or at most two
// edits away.
func suggestKey(unknown string) string {
	squash := func(s string) string {
		return strings.NewReplacer("_", "", "-", "", ".", "").Replace(strings.ToLower(s))
	}
	best, bestDist := "", 3
	for _, k := range knownKeys() {
		if squash(k) == squash(unknown) {
			return k
		}
		if d := editDistance(k, unknown); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// unknownKeyError describes an unknown key, with a suggestion when one is
// close.
func unknownKeyError(key string) string {
	if s := suggestKey(key); s != "" {
		return key + ": unknown key (did you mean " + s + "?)"
	}
	return key + ": unknown key"
}

// typeMismatch matches the TOML decoder's "incompatible types" text.
var typeMismatch = regexp.MustCompile(`incompatible types: TOML value has type (\w+); destination has type (\w+)`)

// tomlTypeNames turns the decoder's Go-flavoured type names into TOML's.
var tomlTypeNames = map[string]string{
	"int64": "an integer", "integer": "an integer", "float64": "a number", "float": "a number",
	"string": "a string", "bool": "true or false", "boolean": "true or false",
	"map": "a table", "slice": "a list", "array": "a list",
}

// friendlyTypeError rewrites the decoder's type mismatch ("TOML value has
// type int64; destination has type string") as "want a string (in quotes),
// got an integer"; other problems are returned as they are.
func friendlyTypeError(problem string) string {
	m := typeMismatch.FindStringSubmatch(problem)
	if m == nil {
		return problem
	}
	got, want := tomlTypeNames[m[1]], tomlTypeNames[m[2]]
	if got == "" || want == "" {
		return problem
	}
	if want == "a string" {
		want = "a string (in quotes)"
	}
	return "want " + want + ", got " + got
}

package testupstream

import (
	"bytes"
	"encoding/json"
)

// kv is one ordered key/value pair of an omap.
type kv struct {
	k string // key
	v any    // value: omap, []any, []string, string, int, int64, bool or nil
}

// omap is an ordered map that encodes to JSON and YAML (it is a
// rubyfmt.Hash) with its keys in insertion order, as Ruby hashes do.
type omap []kv

// Len implements rubyfmt.Hash.
func (m omap) Len() int { return len(m) }

// Entry implements rubyfmt.Hash.
func (m omap) Entry(i int) (string, any) { return m[i].k, m[i].v }

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

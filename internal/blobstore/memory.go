package blobstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
)

// Memory is the reference Store: objects in a map, in one process. It
// gives every guarantee of the contract and serves tests that need a
// shared store without a server. The zero value is not usable; call
// NewMemory.
type Memory struct {
	// mu guards objects, the stored objects by key.
	mu      sync.Mutex
	objects map[string]memObject
}

// memObject is one object of a Memory store.
type memObject struct {
	// b is the object's bytes, never modified in place: every write
	// stores a new slice.
	b []byte
	// sum is the SHA-256 recorded with it (PutOptions), zero when none.
	sum [32]byte
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{objects: make(map[string]memObject)}
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, key string) (io.ReadCloser, Info, error) {
	o, err := m.load(ctx, key)
	if err != nil {
		return nil, Info{}, err
	}
	return io.NopCloser(bytes.NewReader(o.b)), o.info(), nil
}

// Stat implements Store.
func (m *Memory) Stat(ctx context.Context, key string) (Info, error) {
	o, err := m.load(ctx, key)
	if err != nil {
		return Info{}, err
	}
	return o.info(), nil
}

// PutIfAbsent implements Store.
func (m *Memory) PutIfAbsent(ctx context.Context, key string, body io.ReaderAt, size int64, opts PutOptions) (Info, error) {
	if err := ready(ctx, key); err != nil {
		return Info{}, err
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(io.NewSectionReader(body, 0, size), b); err != nil {
		return Info{}, fmt.Errorf("blobstore: reading the body of %s: %w", key, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objects[key]; ok {
		return Info{}, ErrExists
	}
	o := memObject{b: b, sum: opts.SHA256}
	m.objects[key] = o
	return o.info(), nil
}

// PutIfMatch implements Store.
func (m *Memory) PutIfMatch(ctx context.Context, key string, body []byte, version string) (Info, error) {
	if err := ready(ctx, key); err != nil {
		return Info{}, err
	}
	o := memObject{b: bytes.Clone(body)}
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.objects[key]
	if !ok || old.info().Version != version {
		return Info{}, ErrConflict
	}
	m.objects[key] = o
	return o.info(), nil
}

// Delete implements Store.
func (m *Memory) Delete(ctx context.Context, key string) error {
	if err := ready(ctx, key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, key)
	return nil
}

// Keys returns the keys of the stored objects that start with prefix, in
// order: what a bucket listing would show a test.
func (m *Memory) Keys(prefix string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k := range m.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// load returns the stored object at key, or ErrNotFound.
func (m *Memory) load(ctx context.Context, key string) (memObject, error) {
	if err := ready(ctx, key); err != nil {
		return memObject{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[key]
	if !ok {
		return memObject{}, ErrNotFound
	}
	return o, nil
}

// ready checks what every call checks first: the key, and that ctx is
// still live.
func ready(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	return ctx.Err()
}

// info describes the object; the version is the SHA-256 of its bytes, so
// that it changes with the content, as an S3 ETag does.
func (o memObject) info() Info {
	sum := sha256.Sum256(o.b)
	return Info{Size: int64(len(o.b)), Version: hex.EncodeToString(sum[:]), SHA256: o.sum}
}

// Package blobstore is the storage seam of a gemproxy fleet: the contract
// of an object store that replicas share (an S3-compatible bucket in
// production, package s3store), an in-memory reference implementation of
// it (Memory), and the capability probe that tells whether the store
// honours conditional writes. Package blobtest holds the compliance suite
// that every implementation runs.
//
// The proxy keeps two kinds of objects in the shared store (docs/fleet.md):
//   - immutable objects (gems, quick specs), written once after
//     verification with PutIfAbsent from the complete local file;
//   - small coordination objects: claims created with PutIfAbsent, and the
//     /versions pointer swapped with PutIfMatch.
//
// The local tier of a replica (the bbolt cache) implements the contract
// too, in package localblob, and runs the same suite: its TestCompliance
// guards the seam between the two tiers. The proxy copies a verified
// object from the local tier to the shared store through the two Stores
// (copyObject in internal/proxy).
package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Sentinel errors of a Store; test with errors.Is. Every other error means
// the store could not serve the call: it wraps ErrUnavailable when trying
// again later may help, and is permanent otherwise (a denied access, a
// missing bucket, a key CheckKey refuses). A call that its context ended
// returns an error that wraps ctx.Err().
var (
	// ErrNotFound: no object exists at the key.
	ErrNotFound = errors.New("blobstore: object not found")
	// ErrExists: PutIfAbsent found an object at the key (or lost the race
	// to another writer of it); the store holds the other writer's object.
	ErrExists = errors.New("blobstore: object already exists")
	// ErrConflict: PutIfMatch found no object at the key, or one whose
	// version is not the one given; nothing was written.
	ErrConflict = errors.New("blobstore: object version does not match")
	// ErrUnavailable: the store did not answer, or answered with a server
	// error, a throttle or a stall, or its circuit breaker is open. The
	// call may or may not have taken effect.
	ErrUnavailable = errors.New("blobstore: store unavailable")
	// ErrInvalidKey: the key breaks the rules of CheckKey.
	ErrInvalidKey = errors.New("blobstore: invalid key")
)

// Info describes one stored object.
type Info struct {
	// Size is the object's length in bytes.
	Size int64
	// Version is an opaque, non-empty token of the object's content as
	// stored: it changes whenever the content changes, and may or may not
	// change when the same bytes are written again (an S3 ETag is the MD5
	// of a single-part upload). A protocol that swaps an object with
	// PutIfMatch must therefore put something that changes, such as a
	// generation number, into the content. It is for PutIfMatch only:
	// never a digest to verify against, never sent to an HTTP client.
	Version string
	// SHA256 is the SHA-256 that the writer recorded with the object
	// (PutOptions.SHA256), zero when none was recorded or the store keeps
	// no metadata. The store keeps it, it does not compute or check it:
	// it is the writer's claim about the bytes, for a reader to verify
	// them against. A store that hashes what it stores (the local tier,
	// package localblob) returns the SHA-256 it computed instead: see
	// "Recorded checksums" on Store.
	SHA256 [32]byte
}

// PutOptions is what PutIfAbsent records with an object besides its
// bytes. The zero value records nothing.
type PutOptions struct {
	// SHA256, when not zero, is the SHA-256 of the body as the writer
	// verified it; Get and Stat return it in Info.SHA256.
	SHA256 [32]byte
}

// Store is an object store shared by the replicas of a fleet. Keys follow
// CheckKey. Every method is safe for concurrent use, from one process or
// many (a store that one process at a time can open, as the local tier,
// whose bbolt file is locked, gives every guarantee below to the
// goroutines of that process), and honours its context's deadline and
// cancellation.
//
// Guarantees every implementation gives (blobtest checks each one):
//   - Atomicity: an object becomes visible whole or not at all. A write
//     that fails, is cancelled, or whose process dies midway leaves either
//     no object or the previous one, never a prefix or a mix.
//   - Read-after-write: once a write returns nil, every later Get and Stat,
//     by any client, sees that object or a later one; once Delete returns
//     nil, they return ErrNotFound until it is written again.
//   - Conditional writes are decided by the store, atomically: of any
//     number of concurrent PutIfAbsent calls for one key, exactly one
//     succeeds; of concurrent PutIfMatch calls naming the same version,
//     at most one succeeds. A store that ignores the conditions (some
//     S3-compatible servers do) breaks this; Probe detects it.
//   - Integrity is the caller's business: the store returns the bytes it
//     holds. A body cut short is an error from Read, never a clean io.EOF
//     before Info.Size bytes.
//   - Recorded checksums: the SHA-256 that PutIfAbsent records
//     (PutOptions) is kept with the object, atomically with its bytes, and
//     returned by Get and Stat in Info.SHA256, until the object is
//     replaced (PutIfMatch records none) or deleted. A store that cannot
//     keep metadata returns zero, never another value. A store that
//     computes the SHA-256 of every object it stores (localblob, whose
//     cache hashes each body it commits) returns that one instead, for
//     every object, PutIfMatch's too, and refuses, storing nothing, a
//     PutIfAbsent whose recorded SHA-256 is not the body's. Its
//     Info.SHA256 is thus the SHA-256 of the bytes as written, never zero
//     and never a writer's wrong claim; it says that the bytes are intact
//     since, not that a writer verified them against a checksum of its
//     own. blobtest accepts either kind of store, each only whole.
type Store interface {
	// Get opens the object at key for streaming. The reader returns
	// exactly Info.Size bytes and then io.EOF, or an error; the caller
	// must close it. ErrNotFound when there is no object.
	Get(ctx context.Context, key string) (io.ReadCloser, Info, error)
	// Stat describes the object at key without reading it. ErrNotFound
	// when there is none.
	Stat(ctx context.Context, key string) (Info, error)
	// PutIfAbsent stores the size bytes of body (read from offset 0,
	// possibly more than once on a retry; an *os.File of the complete
	// local copy, or a *bytes.Reader) at key, only when no object is
	// there. ErrExists, without writing, when one is: whoever wrote it,
	// this caller or another. A body shorter than size is an error and
	// stores nothing. opts says what is recorded with the object.
	PutIfAbsent(ctx context.Context, key string, body io.ReaderAt, size int64, opts PutOptions) (Info, error)
	// PutIfMatch replaces the object at key with body, only when the
	// object is there and its version is version. ErrConflict, without
	// writing, when there is no object or its version differs. For small
	// objects (claims, pointers): body is held in memory. The new object
	// has no recorded SHA-256.
	PutIfMatch(ctx context.Context, key string, body []byte, version string) (Info, error)
	// Delete removes the object at key, unconditionally; deleting an
	// absent object is not an error.
	Delete(ctx context.Context, key string) error
}

// maxKeyLen bounds a key, well inside S3's 1024 bytes with a prefix.
const maxKeyLen = 512

// CheckKey reports, wrapping ErrInvalidKey, why key is not a valid object
// key: it must be 1 to 512 bytes of non-empty segments separated by "/",
// none of them "." or "..", made of ASCII letters, digits and "._~+-".
// Gem file names ("nokogiri-1.16.0-x86_64-linux.gem") pass as they are.
func CheckKey(key string) error {
	if key == "" || len(key) > maxKeyLen {
		return fmt.Errorf("%w: %q: length %d, want 1 to %d", ErrInvalidKey, key, len(key), maxKeyLen)
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w: %q: empty, \".\" or \"..\" segment", ErrInvalidKey, key)
		}
		if i := strings.IndexFunc(seg, badKeyRune); i >= 0 {
			return fmt.Errorf("%w: %q: character %q", ErrInvalidKey, key, seg[i])
		}
	}
	return nil
}

// badKeyRune reports whether r may not appear in a key segment.
func badKeyRune(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return false
	}
	return !strings.ContainsRune("._~+-", r)
}

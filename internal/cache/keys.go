package cache

import "encoding/binary"

// The bbolt file (DATA_DIR/cache.db) is laid out as follows; SchemaVersion
// changes whenever this layout or the entry encoding changes incompatibly.
//
//	cache.db
//	├── meta                      bucket
//	│   └── "schema"           -> SchemaVersion, uint32 big endian
//	├── entries                   bucket: one value per cached URL
//	│   └── KEY                -> encoded Entry metadata (entry.go), KEY = canonical upstream path + query
//	├── chunks                    bucket: the bodies, never one value per body
//	│   └── BODYID|INDEX       -> up to ChunkSize bytes of one body (BODYID uint64, INDEX uint32, big endian)
//	├── access                    bucket: usage per KEY, for least-recently-used eviction and stats
//	│   └── KEY                -> last access (unix seconds, uint64) | hits (uint64), big endian
//	└── pending                   bucket: entries still to upload to a fleet's shared store (pending.go)
//	    └── KEY                -> pendingMark
//
// Each entry has one body ID for its identity body and, when it is served
// compressed, one for its gzip form. Body IDs come from the chunks bucket's
// sequence and are never reused: a replaced body's chunks are deleted once its
// last reader is done, without touching the new body. An append to a compact
// index file extends the identity body in place (readers keep their own
// length, and the prefix never changes) and writes a new gzip body. Chunks
// that no entry references (a crash while a superseded body still had
// readers) are collected at open.

// SchemaVersion is the version of the bucket layout and entry encoding above.
const SchemaVersion uint32 = 1

// ChunkSize is the largest body slice stored in one bbolt value.
const ChunkSize = 256 << 10

// Bucket names.
var (
	bucketMeta    = []byte("meta")
	bucketEntries = []byte("entries")
	bucketChunks  = []byte("chunks")
	bucketAccess  = []byte("access")
	bucketPending = []byte("pending")
	keySchema     = []byte("schema")
)

// chunkKeyLen is the length of a chunk key: body ID and chunk index.
const chunkKeyLen = 8 + 4

// chunkKey encodes the key of chunk index of body id.
func chunkKey(id uint64, index uint32) []byte {
	k := make([]byte, chunkKeyLen)
	binary.BigEndian.PutUint64(k, id)
	binary.BigEndian.PutUint32(k[8:], index)
	return k
}

// chunkPrefix is the key prefix shared by every chunk of body id.
func chunkPrefix(id uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, id)
	return k
}

// accessValue encodes an access bucket value.
func accessValue(lastAccess, hits int64) []byte {
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v, uint64(lastAccess))
	binary.BigEndian.PutUint64(v[8:], uint64(hits))
	return v
}

// parseAccess decodes an access bucket value; a malformed one reads as zero.
func parseAccess(v []byte) (lastAccess, hits int64) {
	if len(v) != 16 {
		return 0, 0
	}
	return int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:]))
}

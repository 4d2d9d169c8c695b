// Package s3store is the blobstore.Store of an S3-compatible bucket (AWS
// S3, MinIO, Ceph RGW, SeaweedFS, GCS through its S3 API), over
// aws-sdk-go-v2. Conditional writes are S3's own: PutIfAbsent sends
// If-None-Match: *, PutIfMatch sends If-Match with the ETag that the
// object's Info.Version carries. A SHA-256 recorded with an object is its
// user metadata x-amz-meta-sha256, in hex. Every call has its own deadline and goes
// through a circuit breaker, so that a store that is down or stalls costs
// the caller a bounded wait and then fails fast.
package s3store

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/breaker"
)

// Options configures New. Zero values select the defaults given per field.
type Options struct {
	// Bucket is the bucket's name. Required.
	Bucket string
	// Prefix is put before every key, with a "/" between them, so that
	// one bucket can hold several fleets. It follows blobstore.CheckKey.
	// Default none: keys are object names as they are.
	Prefix string
	// Endpoint is the URL of an S3-compatible server, e.g.
	// http://127.0.0.1:8333; the bucket is then addressed by path
	// (http://host/BUCKET/KEY). Default AWS S3, with virtual-host
	// addressing.
	Endpoint string
	// Region is the signing region. Default the standard AWS chain
	// (AWS_REGION, the shared config file), else "us-east-1" when Endpoint
	// is set; New fails when neither gives one for AWS.
	Region string
	// Credentials signs the requests. Default the standard AWS chain:
	// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the shared files, web
	// identity (IRSA), the instance's role.
	Credentials aws.CredentialsProvider
	// Timeout bounds each call up to its answer (the whole of Stat,
	// Delete and PutIfMatch; Get until the headers; PutIfAbsent with the
	// time its body may take, see MinRate), retries included. Default 10s.
	Timeout time.Duration
	// MinRate is the slowest transfer, in bytes per second, that a body
	// may take: a PutIfAbsent or a Get body of N bytes gets N/MinRate on
	// top of Timeout before it is cut off as stalled. Default 1 MiB/s.
	MinRate int64
	// MaxAttempts is how many times the SDK tries a call that failed for
	// a reason worth retrying (a 5xx, a throttle, a reset). Default 3.
	MaxAttempts int
	// Breaker configures the circuit breaker in front of the store.
	Breaker breaker.Options
	// Logger receives the breaker's state changes. Default slog.Default().
	Logger *slog.Logger
}

// withDefaults fills zero fields.
func (o Options) withDefaults() Options {
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MinRate == 0 {
		o.MinRate = 1 << 20
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 3
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Store is a blobstore.Store over one S3 bucket (and prefix). It is safe
// for concurrent use.
type Store struct {
	// opts are the options with defaults filled, client the SDK's client,
	// breaker the circuit breaker in front of it.
	opts    Options
	client  *s3.Client
	breaker *breaker.Breaker
}

// New builds the store's client. It contacts nothing: the first call (or
// blobstore.Probe, which the caller should run at start) does.
func New(ctx context.Context, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if opts.Bucket == "" {
		return nil, errors.New("s3store: no bucket")
	}
	if opts.Prefix != "" {
		if err := blobstore.CheckKey(opts.Prefix); err != nil {
			return nil, fmt.Errorf("s3store: prefix: %w", err)
		}
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("s3store: AWS configuration: %w", err)
	}
	region := cmpOr(opts.Region, cfg.Region)
	if opts.Endpoint != "" {
		region = cmpOr(region, "us-east-1")
	}
	if region == "" {
		return nil, errors.New("s3store: no region: set AWS_REGION")
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.Region = region
		if opts.Credentials != nil {
			o.Credentials = opts.Credentials
		}
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
			o.UsePathStyle = true
		}
		// Checksums beyond what S3 requires are not understood by every
		// S3-compatible server; the caller verifies what it reads anyway.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.RetryMaxAttempts = opts.MaxAttempts
	})
	s := &Store{opts: opts, client: client}
	s.breaker = breaker.New(opts.Breaker, time.Now, func(state int, reason string) {
		opts.Logger.Warn("shared store circuit state changed", "bucket", opts.Bucket, "state", state, "reason", reason)
	})
	return s, nil
}

// cmpOr returns a when it is set, else b.
func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// objectKey is the bucket's name for key.
func (s *Store) objectKey(key string) *string {
	if s.opts.Prefix == "" {
		return aws.String(key)
	}
	return aws.String(s.opts.Prefix + "/" + key)
}

// transferTime is how long a body of size bytes may take on top of Timeout.
func (s *Store) transferTime(size int64) time.Duration {
	return time.Duration(float64(size) / float64(s.opts.MinRate) * float64(time.Second))
}

// Get implements blobstore.Store. The body's deadline is Timeout plus
// its size at MinRate, from when the headers arrived.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, blobstore.Info, error) {
	c, err := s.begin(ctx, opGet, key, s.opts.Timeout)
	if err != nil {
		return nil, blobstore.Info{}, err
	}
	out, err := s.client.GetObject(c.ctx, &s3.GetObjectInput{Bucket: &s.opts.Bucket, Key: s.objectKey(key)})
	if err != nil {
		return nil, blobstore.Info{}, c.end(err)
	}
	info := infoOf(out.ContentLength, out.ETag, out.Metadata)
	c.extend(s.opts.Timeout + s.transferTime(info.Size))
	return &body{rc: out.Body, c: c}, info, nil
}

// Stat implements blobstore.Store.
func (s *Store) Stat(ctx context.Context, key string) (blobstore.Info, error) {
	c, err := s.begin(ctx, opStat, key, s.opts.Timeout)
	if err != nil {
		return blobstore.Info{}, err
	}
	out, err := s.client.HeadObject(c.ctx, &s3.HeadObjectInput{Bucket: &s.opts.Bucket, Key: s.objectKey(key)})
	if err != nil {
		return blobstore.Info{}, c.end(err)
	}
	return infoOf(out.ContentLength, out.ETag, out.Metadata), c.end(nil)
}

// PutIfAbsent implements blobstore.Store with one PutObject carrying
// If-None-Match: *; S3 stores an object of one request whole or not at
// all. A 412, or a 409 (a concurrent conditional write), is ErrExists;
// so is a retry refused because the first attempt had landed. A SHA-256
// in opts goes with the object as its user metadata (sha256Meta).
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.ReaderAt, size int64, opts blobstore.PutOptions) (blobstore.Info, error) {
	c, err := s.begin(ctx, opPutIfAbsent, key, s.opts.Timeout+s.transferTime(size))
	if err != nil {
		return blobstore.Info{}, err
	}
	out, err := s.client.PutObject(c.ctx, &s3.PutObjectInput{
		Bucket:        &s.opts.Bucket,
		Key:           s.objectKey(key),
		Body:          &sizedBody{SectionReader: io.NewSectionReader(r, 0, size)},
		ContentLength: aws.Int64(size),
		IfNoneMatch:   aws.String("*"),
		Metadata:      metadataOf(opts),
	})
	if err != nil {
		return blobstore.Info{}, c.end(err)
	}
	return blobstore.Info{Size: size, Version: aws.ToString(out.ETag), SHA256: opts.SHA256}, c.end(nil)
}

// PutIfMatch implements blobstore.Store with one PutObject carrying
// If-Match: version. A 412, a 409, or a 404 (no object) is ErrConflict;
// so is a retry refused because the first attempt had landed, which is
// why a caller that gets ErrConflict reads the object again.
func (s *Store) PutIfMatch(ctx context.Context, key string, b []byte, version string) (blobstore.Info, error) {
	c, err := s.begin(ctx, opPutIfMatch, key, s.opts.Timeout)
	if err != nil {
		return blobstore.Info{}, err
	}
	size := int64(len(b))
	out, err := s.client.PutObject(c.ctx, &s3.PutObjectInput{
		Bucket:        &s.opts.Bucket,
		Key:           s.objectKey(key),
		Body:          &sizedBody{SectionReader: io.NewSectionReader(bytes.NewReader(b), 0, size)},
		ContentLength: aws.Int64(size),
		IfMatch:       aws.String(version),
	})
	if err != nil {
		return blobstore.Info{}, c.end(err)
	}
	return blobstore.Info{Size: size, Version: aws.ToString(out.ETag)}, c.end(nil)
}

// Delete implements blobstore.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	c, err := s.begin(ctx, opDelete, key, s.opts.Timeout)
	if err != nil {
		return err
	}
	_, err = s.client.DeleteObject(c.ctx, &s3.DeleteObjectInput{Bucket: &s.opts.Bucket, Key: s.objectKey(key)})
	return c.end(err)
}

// sha256Meta is the user metadata key (header x-amz-meta-sha256) of the
// SHA-256 recorded with an object, in hex. The SDK gives response
// metadata keys in lower case.
const sha256Meta = "sha256"

// metadataOf is the user metadata that records opts with an object; nil
// when there is nothing to record.
func metadataOf(opts blobstore.PutOptions) map[string]string {
	if opts.SHA256 == ([32]byte{}) {
		return nil
	}
	return map[string]string{sha256Meta: hex.EncodeToString(opts.SHA256[:])}
}

// infoOf builds an Info from the headers of an answer: its size, ETag and
// user metadata. A recorded SHA-256 that is not 64 hex digits (written by
// something else than a Store) is taken as none.
func infoOf(size *int64, etag *string, meta map[string]string) blobstore.Info {
	info := blobstore.Info{Size: aws.ToInt64(size), Version: aws.ToString(etag)}
	if h := meta[sha256Meta]; hex.DecodedLen(len(h)) == len(info.SHA256) {
		if _, err := hex.Decode(info.SHA256[:], []byte(h)); err != nil {
			info.SHA256 = [32]byte{}
		}
	}
	return info
}

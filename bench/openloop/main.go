// Command openloop is the steady-load generator of bench/run.sh: it sends
// GET requests to one URL at a constant arrival rate and measures each
// request's latency from the moment it was due to be sent (its intended
// send time), not from when it went out, so a server that stalls is
// charged for every request that waited behind the stall (no coordinated
// omission).
//
// One pacer, on an OS thread of its own, sends request i at start + i/rate:
// it sleeps until then with nanosleep(2) and a timer slack of 1 ns, takes
// an idle connection and writes the request to its socket itself. Both are
// plain system calls, not the Go runtime's timers and poller: an idle Go
// runtime waits for its next timer in epoll_wait(2), whose timeout is in
// whole milliseconds, so requests scheduled with time.Sleep leave up to a
// millisecond late and in bursts, and a server sees bursts, not a constant
// rate. Each connection has a reader goroutine that reads the answers and
// hands the connection back to the pacer when it is idle. When every
// connection is busy a due request waits for the first idle one, and that
// wait counts in its latency, as it would for a client with that many
// connections. The request is built once; the answer is read by a minimal
// parser (status line, Content-Length, body) into a buffer per connection,
// so the generator allocates nothing per request and leaves the shared
// cores to the servers.
//
// Besides the latency, each request's send lag (how late it was written)
// and its response time (from the write to the last byte of the answer,
// for diagnosis: it leaves the lag out) are recorded.
// Latencies go into a log-linear histogram (1/64 relative precision) per
// connection. The result is one JSON object on stdout; a human summary goes
// to stderr. Everything is bounded in time: the run lasts -warmup +
// -duration, and requests still unanswered -timeout after the end are
// counted as errors.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// result is the JSON printed on stdout.
type result struct {
	Label  string  `json:"label"`
	URL    string  `json:"url"`
	Rate   float64 `json:"rate"`
	Conns  int     `json:"conns"`
	Warmup float64 `json:"warmup_s"`
	// Duration is the measured span in seconds (after the warm-up).
	Duration float64 `json:"duration_s"`
	// Requests counts the measured requests answered with the expected
	// status; Errors the measured ones that were not (transport errors,
	// other statuses, timeouts).
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// FirstError describes the first error seen, measured or not.
	FirstError string `json:"first_error,omitempty"`
	// Achieved is the measured requests answered per second.
	Achieved float64 `json:"achieved_rate"`
	// Latency percentiles in microseconds, from the intended send time.
	Latency percentiles `json:"latency_us"`
	// Lag percentiles in microseconds: how late after its intended time
	// each request was written (the generator's or the pool's delay).
	Lag percentiles `json:"send_lag_us"`
	// Response percentiles in microseconds: from the write of each request
	// to the last byte of its answer, the generator's own lag left out (a
	// closed-loop figure: it does not count requests waiting to be sent).
	Response percentiles `json:"response_us"`
	// CPUSeconds is the generator's own CPU time (user+system).
	CPUSeconds float64 `json:"cpu_s"`
}

// percentiles of a histogram, in microseconds.
type percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

// config is one run's parameters.
type config struct {
	target, label    string
	host             string
	request          []byte
	rate             float64
	duration, warmup time.Duration
	timeout          time.Duration
	conns, expect    int
}

func main() {
	target := flag.String("url", "", "http:// URL to GET (required)")
	rate := flag.Float64("rate", 1000, "requests per second")
	duration := flag.Duration("duration", 10*time.Second, "measured span")
	warmup := flag.Duration("warmup", time.Second, "span at the same rate before the measured one, not recorded")
	conns := flag.Int("conns", 0, "connections; 0: rate/500, at least 16 and at most 512")
	timeout := flag.Duration("timeout", 5*time.Second, "how long after the end unanswered requests are waited for")
	expect := flag.Int("expect-status", 200, "status of a successful answer")
	label := flag.String("label", "", "label copied into the result")
	var headers headerList
	flag.Var(&headers, "H", `request header "Name: value" (repeatable)`)
	flag.Parse()
	if *target == "" || *rate <= 0 || *duration <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	u, err := url.Parse(*target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		fatal(fmt.Errorf("-url must be an http:// URL: %q", *target))
	}
	if *conns <= 0 {
		*conns = min(max(int(*rate/500), 16), 512)
	}
	res, err := run(config{target: *target, label: *label, host: u.Host, request: buildRequest(u, headers),
		rate: *rate, duration: *duration, warmup: *warmup, timeout: *timeout, conns: *conns, expect: *expect})
	if err != nil {
		fatal(err)
	}
	fmt.Fprintf(os.Stderr, "openloop %s: %.0f req/s for %s over %d conns: %d ok, %d errors, achieved %.0f req/s; latency µs p50 %.0f p99 %.0f p99.9 %.0f max %.0f; send lag p99 %.0f µs; generator CPU %.2f s\n",
		res.Label, res.Rate, *duration, res.Conns, res.Requests, res.Errors, res.Achieved,
		res.Latency.P50, res.Latency.P99, res.Latency.P999, res.Latency.Max, res.Lag.P99, res.CPUSeconds)
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fatal(err)
	}
	if res.Errors > 0 {
		os.Exit(1)
	}
}

// run opens the connections, sends the scheduled requests, waits for their
// answers and returns the figures; it fails only when a connection cannot
// be opened at the start.
func run(c config) (result, error) {
	s := &schedule{interval: float64(time.Second) / c.rate, warmup: c.warmup,
		total: int64(math.Round(c.rate * (c.warmup + c.duration).Seconds()))}
	// Connections are opened before the clock starts; every read ends by
	// the deadline, a little after the run's end.
	deadline := time.Now().Add(c.warmup + c.duration + c.timeout + 5*time.Second)
	idle := make(chan *worker, c.conns)
	workers := make([]*worker, c.conns)
	for i := range workers {
		workers[i] = &worker{addr: c.host, deadline: deadline, request: c.request, expect: c.expect, buf: make([]byte, 64<<10)}
		if err := workers[i].connect(); err != nil {
			for _, w := range workers[:i] {
				w.conn.Close()
			}
			return result{}, err
		}
	}
	cpu0 := cpuTime()
	s.start = time.Now()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(s, idle)
		}()
	}
	// The pacer and the wait for answers end at the same time: -timeout
	// after the last request was due.
	end := s.start.Add(c.warmup + c.duration + c.timeout)
	stop := make(chan struct{})
	stopAt := time.AfterFunc(time.Until(end), func() { close(stop) })
	unsent := make(chan int64)
	go func() { unsent <- pace(s, idle, stop) }()
	notSent := <-unsent
	for s.sent.Load() > s.answered.Load() && time.Now().Before(end) {
		time.Sleep(time.Millisecond)
	}
	stopAt.Stop()
	for _, w := range workers {
		w.stop()
	}
	wg.Wait()
	res := collect(workers, c.label, c.target, c.rate, c.warmup, c.duration)
	if notSent > 0 {
		res.Errors += notSent
		if res.FirstError == "" {
			res.FirstError = "requests not sent: every connection was busy until the timeout"
		}
	}
	res.CPUSeconds = (cpuTime() - cpu0).Seconds()
	return res, nil
}

// fatal prints err and exits 1.
func fatal(err error) {
	fmt.Fprintln(os.Stderr, "openloop:", err)
	os.Exit(1)
}

// headerList collects repeated -H flags.
type headerList []string

// String joins the headers.
func (h *headerList) String() string { return strings.Join(*h, ", ") }

// Set adds one "Name: value" header.
func (h *headerList) Set(v string) error {
	if name, _, ok := strings.Cut(v, ":"); !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("header %q is not Name: value", v)
	}
	*h = append(*h, v)
	return nil
}

// buildRequest returns the bytes of the GET request, sent as they are for
// every request.
func buildRequest(u *url.URL, headers headerList) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: openloop\r\n", u.RequestURI(), u.Host)
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		fmt.Fprintf(&b, "%s: %s\r\n", strings.TrimSpace(name), strings.TrimSpace(value))
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// schedule is the run's timetable: request i is due at start + i*interval.
type schedule struct {
	start    time.Time
	interval float64 // nanoseconds between requests
	warmup   time.Duration
	total    int64
	// sent counts the requests written, answered those whose answer (or
	// failure) the readers have seen.
	sent, answered atomic.Int64
}

// pace sends every scheduled request at its intended time, from the
// calling goroutine locked to its OS thread, until all have been sent or
// stop is closed; it returns how many measured requests were not sent.
func pace(s *schedule, idle <-chan *worker, stop <-chan struct{}) (notSent int64) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Without this, nanosleep may end up to 50 µs late (the default slack).
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_TIMERSLACK, 1, 0)
	for i := range s.total {
		due := time.Duration(float64(i) * s.interval)
		sleepUntil(s.start, due)
		// A worker whose connection failed for good is dropped.
		for sent := false; !sent; {
			select {
			case w := <-idle:
				sent = w.send(due, s.start)
			case <-stop:
				for ; i < s.total; i++ {
					if time.Duration(float64(i)*s.interval) >= s.warmup {
						notSent++
					}
				}
				return notSent
			}
		}
		s.sent.Add(1)
	}
	return 0
}

// sleepUntil sleeps until start+due with nanosleep(2) called directly,
// which leaves the Go scheduler out: the thread keeps its P meanwhile (the
// readers share the others), and no runtime thread is woken for it.
func sleepUntil(start time.Time, due time.Duration) {
	for {
		wait := due - time.Since(start)
		if wait <= 0 {
			return
		}
		ts := syscall.NsecToTimespec(int64(wait))
		syscall.RawSyscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
	}
}

// worker is one persistent connection: the pacer writes requests to it,
// its reader goroutine (run) reads the answers.
type worker struct {
	addr     string
	deadline time.Time
	request  []byte
	expect   int

	// mu guards the connection and its socket: the reader replaces them
	// after an error, the pacer writes to the socket, stop closes it.
	mu      sync.Mutex
	conn    net.Conn
	fd      uintptr // conn's socket, noSocket once it is closed
	stopped atomic.Bool
	// The request in flight: its intended send time and, plus one so that
	// zero means none, when it was written (offsets from the start); the
	// errno of a failed write.
	due, sentPlusOne atomic.Int64
	sendErrno        atomic.Uintptr

	// buf holds what was read from conn; buf[r:w] is not consumed yet.
	buf  []byte
	r, w int

	latency, lag, response histogram
	ok, errors             int64
	firstError             error
}

// noSocket is the fd of a worker whose connection is closed.
const noSocket = ^uintptr(0)

// dial opens a connection to the server; it returns it with its socket.
func (w *worker) dial() (net.Conn, uintptr, error) {
	c, err := net.DialTimeout("tcp", w.addr, 5*time.Second)
	if err != nil {
		return nil, noSocket, fmt.Errorf("connect %s: %w", w.addr, err)
	}
	fd := noSocket
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err == nil {
		err = raw.Control(func(s uintptr) { fd = s })
	}
	if err == nil {
		err = c.SetReadDeadline(w.deadline)
	}
	if err != nil {
		c.Close()
		return nil, noSocket, err
	}
	return c, fd, nil
}

// connect opens the worker's first connection.
func (w *worker) connect() (err error) {
	w.conn, w.fd, err = w.dial()
	return err
}

// reconnect replaces the connection after an error. It returns when the
// pacer wrote a request to the old connection since the error (-1 when it
// did not): its answer will never come.
func (w *worker) reconnect() (stale time.Duration, err error) {
	c, fd, err := w.dial()
	w.mu.Lock()
	defer w.mu.Unlock()
	stale = time.Duration(w.sentPlusOne.Swap(0) - 1)
	w.closeLocked()
	if err == nil && w.stopped.Load() {
		c.Close()
		err = net.ErrClosed
	}
	if err != nil {
		return stale, err
	}
	w.conn, w.fd, w.r, w.w = c, fd, 0, 0
	return stale, nil
}

// closeLocked closes the connection; w.mu is held.
func (w *worker) closeLocked() {
	w.conn.Close()
	w.fd = noSocket
}

// stop ends the reader: an answer still awaited counts as an error.
func (w *worker) stop() {
	w.stopped.Store(true)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closeLocked()
}

// send writes the request due at due with one write(2) on the worker's
// socket; it returns false when the worker has no connection any more. A
// failed write shuts the socket down, so that the reader sees it and
// records the error.
func (w *worker) send(due time.Duration, start time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fd == noSocket {
		return false
	}
	w.due.Store(int64(due))
	w.sentPlusOne.Store(int64(time.Since(start)) + 1)
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, w.fd, uintptr(unsafe.Pointer(&w.request[0])), uintptr(len(w.request)))
	if errno == 0 && int(n) < len(w.request) {
		errno = syscall.EAGAIN
	}
	if errno != 0 {
		w.sendErrno.Store(uintptr(errno))
		syscall.Shutdown(int(w.fd), syscall.SHUT_RDWR)
	}
	return true
}

// run offers the connection to the pacer and reads the answer to each
// request sent on it, until the worker is stopped or cannot reconnect.
func (w *worker) run(s *schedule, idle chan<- *worker) {
	defer w.stop()
	offer := true
	for {
		if offer {
			idle <- w
		}
		err := w.readAnswer()
		done := time.Since(s.start)
		sent := time.Duration(w.sentPlusOne.Swap(0) - 1)
		due := time.Duration(w.due.Load())
		if e := w.sendErrno.Swap(0); e != 0 {
			err = fmt.Errorf("send: %w", syscall.Errno(e))
		}
		// Without a request in flight the connection is still offered: it
		// failed while idle.
		pending := sent >= 0
		offer = pending
		if pending {
			s.answered.Add(1)
		}
		measured := pending && due >= s.warmup
		switch {
		case err == nil && pending:
			if measured {
				w.ok++
				w.latency.record(done - due)
				w.lag.record(sent - due)
				w.response.record(done - sent)
			}
			continue
		case err == nil:
			err = errors.New("an answer to no request")
		case w.stopped.Load():
			if pending {
				w.fail(fmt.Errorf("no answer within the timeout: %w", err), measured)
			}
			return
		}
		w.fail(err, measured)
		if time.Now().After(w.deadline) {
			return
		}
		stale, err := w.reconnect()
		if stale >= 0 {
			s.answered.Add(1)
			w.fail(errors.New("sent on a connection that had failed"), time.Duration(w.due.Load()) >= s.warmup)
			offer = true
		}
		if err != nil {
			return
		}
	}
}

// fail records err.
func (w *worker) fail(err error, measured bool) {
	if measured {
		w.errors++
	}
	if w.firstError == nil {
		w.firstError = err
	}
}

// errStatus is an answer with another status than expected.
var errStatus = errors.New("unexpected status")

// readAnswer reads one whole answer.
func (w *worker) readAnswer() error {
	status, length, err := w.readHead()
	if err != nil {
		return err
	}
	if status != 304 && status != 204 {
		if length < 0 {
			return fmt.Errorf("status %d without Content-Length (chunked answers are not supported)", status)
		}
		if err := w.discard(length); err != nil {
			return err
		}
	}
	if status != w.expect {
		return fmt.Errorf("%w %d (want %d)", errStatus, status, w.expect)
	}
	return nil
}

// readHead reads the status line and headers; it returns the status and
// the Content-Length (-1 when absent).
func (w *worker) readHead() (status int, length int64, err error) {
	end := -1
	for {
		if end = bytes.Index(w.buf[w.r:w.w], []byte("\r\n\r\n")); end >= 0 {
			break
		}
		if err := w.fill(); err != nil {
			return 0, 0, err
		}
	}
	head := w.buf[w.r : w.r+end]
	w.r += end + 4
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, 0, fmt.Errorf("bad status line %q", line)
	}
	status, err = atoi(line[9:12])
	if err != nil {
		return 0, 0, fmt.Errorf("bad status line %q", line)
	}
	length = -1
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && len(name) == len("Content-Length") && bytes.EqualFold(name, []byte("Content-Length")) {
			n, err := atoi(bytes.TrimSpace(value))
			if err != nil {
				return 0, 0, fmt.Errorf("bad Content-Length %q", value)
			}
			length = int64(n)
		}
	}
	return status, length, nil
}

// discard consumes n body bytes.
func (w *worker) discard(n int64) error {
	for n > 0 {
		if w.r == w.w {
			if err := w.fill(); err != nil {
				return err
			}
		}
		c := min(n, int64(w.w-w.r))
		w.r += int(c)
		n -= c
	}
	return nil
}

// fill reads more from the connection, compacting the buffer first.
func (w *worker) fill() error {
	if w.r > 0 {
		w.w = copy(w.buf, w.buf[w.r:w.w])
		w.r = 0
	}
	if w.w == len(w.buf) {
		return errors.New("response head larger than the buffer")
	}
	n, err := w.conn.Read(w.buf[w.w:])
	w.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// atoi parses a non-negative decimal number without allocating.
func atoi(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, strconv.ErrSyntax
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' || n > math.MaxInt32 {
			return 0, strconv.ErrSyntax
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}

// histogram counts durations in log-linear buckets: 64 sub-buckets per
// power of two of nanoseconds, so a bucket is at most 1/64 wide relative
// to its values.
type histogram struct {
	counts [subBuckets * 48]uint32
	max    time.Duration
}

// subBuckets is the number of buckets per power of two.
const subBuckets = 64

// record adds d.
func (h *histogram) record(d time.Duration) {
	d = max(d, 0)
	h.counts[bucketOf(uint64(d))]++
	h.max = max(h.max, d)
}

// bucketOf returns the bucket of v nanoseconds.
func bucketOf(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	exp := bits.Len64(v) - 7 // v >> exp is in [64, 128)
	return (exp+1)*subBuckets + int(v>>exp) - subBuckets
}

// bucketTop returns the largest value of bucket i, in nanoseconds.
func bucketTop(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	exp := i/subBuckets - 1
	mant := uint64(i%subBuckets + subBuckets)
	return (mant+1)<<exp - 1
}

// merge adds o's counts to h.
func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.max = max(h.max, o.max)
}

// percentiles returns p50, p90, p99, p99.9 and the maximum in
// microseconds; each percentile is its bucket's top, capped by the max.
func (h *histogram) percentiles() percentiles {
	var total uint64
	for _, c := range h.counts {
		total += uint64(c)
	}
	at := func(q float64) float64 {
		if total == 0 {
			return 0
		}
		rank := uint64(math.Ceil(q * float64(total)))
		var seen uint64
		for i, c := range h.counts {
			if seen += uint64(c); seen >= rank {
				return math.Min(float64(bucketTop(i)), float64(h.max)) / 1e3
			}
		}
		return float64(h.max) / 1e3
	}
	return percentiles{P50: at(0.50), P90: at(0.90), P99: at(0.99), P999: at(0.999), Max: float64(h.max) / 1e3}
}

// collect merges the workers' figures.
func collect(workers []*worker, label, target string, rate float64, warmup, duration time.Duration) result {
	var latency, lag, response histogram
	res := result{Label: label, URL: target, Rate: rate, Conns: len(workers), Warmup: warmup.Seconds(), Duration: duration.Seconds()}
	for _, w := range workers {
		latency.merge(&w.latency)
		lag.merge(&w.lag)
		response.merge(&w.response)
		res.Requests += w.ok
		res.Errors += w.errors
		if res.FirstError == "" && w.firstError != nil {
			res.FirstError = w.firstError.Error()
		}
	}
	res.Achieved = float64(res.Requests) / duration.Seconds()
	res.Latency, res.Lag, res.Response = latency.percentiles(), lag.percentiles(), response.percentiles()
	return res
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

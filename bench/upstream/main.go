// Command upstream runs the test upstream (internal/testupstream, the
// stand-in for rubygems.org used by the test suite) on a loopback port,
// filled with realistic benchmark content:
//
//   - a few thousand gems (-gems) with many versions each, published in one
//     interleaved batch, so /versions is several MB and /info/NAME files
//     range from about 1 KB to 30 KB (runtime dependencies included);
//   - "benchsmall", a gem with a small (~1.5 KB) /info file and API JSON;
//   - three padded gems of 10 KB, 1 MB and 50 MB (BuildGem with Padding).
//
// Besides the rubygems.org endpoints it serves three local-only control
// endpoints, answered before the test upstream sees the request (so they
// are never counted):
//
//	GET  /__stats             JSON: requests and request-body bytes per path
//	POST /__reset             clear the request log and counters
//	POST /__latency?d=200ms   set the latency added before every response
//
// SIGUSR1 prints the per-path request counts to stderr. With -manifest it
// writes a shell-sourceable file describing the benchmark targets (paths,
// sizes, ETags) once it is listening.
package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// Names of the benchmark targets.
const (
	smallGem  = "benchsmall"  // small /info and API JSON
	largeGem  = "benchlarge"  // ~30 KB /info
	gem10K    = "benchgem10k" // 10 KB .gem
	gem1M     = "benchgem1m"  // 1 MB .gem
	gem50M    = "benchgem50m" // 50 MB .gem
	benchVers = "1.0.0"       // version of the padded gems
)

func main() {
	listen := flag.String("listen", "127.0.0.1:19290", "loopback host:port to listen on")
	gems := flag.Int("gems", 3000, "number of filler gems published besides the benchmark targets")
	seed := flag.Uint64("seed", 1, "seed of the generated content")
	latency := flag.Duration("latency", 0, "latency added before every response (e.g. 50ms)")
	manifest := flag.String("manifest", "", "write a shell-sourceable description of the targets to this file")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("upstream: ")

	host, _, err := net.SplitHostPort(*listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		log.Fatalf("-listen %q: must be a loopback IP and port (e.g. 127.0.0.1:19290)", *listen)
	}

	start := time.Now()
	up := testupstream.New(testupstream.Options{})
	items, err := content(*gems, *seed)
	if err != nil {
		log.Fatal(err)
	}
	if err := up.PublishAll(items); err != nil {
		log.Fatal(err)
	}
	up.SetLatency(*latency)
	m := describe(up, len(items), *gems)
	log.Printf("published %d gems, %d versions in %s; /versions %d bytes; /info sizes %s",
		*gems+5, len(items), time.Since(start).Round(time.Millisecond), m.versionsLen, m.infoSizes)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: control(up), ReadHeaderTimeout: 10 * time.Second}
	if *manifest != "" {
		if err := os.WriteFile(*manifest, []byte(m.shell(*listen)), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("listening on http://%s (latency %s)", ln.Addr(), *latency)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for sig := range sigs {
			if sig == syscall.SIGUSR1 {
				st := stats(up)
				b, _ := json.MarshalIndent(st, "", "  ")
				fmt.Fprintf(os.Stderr, "%s\n", b)
				continue
			}
			up.Close() // releases latency sleeps
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = srv.Shutdown(ctx)
			cancel()
			return
		}
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// control wraps the test upstream with the local control endpoints.
func control(up *testupstream.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/__stats":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(stats(up))
		case "/__reset":
			up.Reset()
			fmt.Fprintln(w, "ok")
		case "/__latency":
			d, err := time.ParseDuration(r.URL.Query().Get("d"))
			if err != nil || d < 0 {
				http.Error(w, "want ?d=DURATION", http.StatusBadRequest)
				return
			}
			up.SetLatency(d)
			fmt.Fprintln(w, "ok")
		default:
			up.ServeHTTP(w, r)
		}
	})
}

// statsDoc is the JSON of /__stats.
type statsDoc struct {
	// Total is the number of requests since start or the last reset.
	Total int `json:"total"`
	// Counts is the number of requests per URL path.
	Counts map[string]int `json:"counts"`
	// BodyBytes is the number of request-body bytes received per URL path.
	BodyBytes map[string]int64 `json:"body_bytes"`
	// Status is not known to the log; Methods counts METHOD PATH pairs.
	Methods map[string]int `json:"methods"`
}

// stats summarises the request log of up.
func stats(up *testupstream.Server) statsDoc {
	st := statsDoc{Counts: map[string]int{}, BodyBytes: map[string]int64{}, Methods: map[string]int{}}
	for _, r := range up.Log() {
		st.Total++
		st.Counts[r.Path]++
		st.BodyBytes[r.Path] += r.BodyLen
		st.Methods[r.Method+" "+r.Path]++
	}
	return st
}

// content builds the batch: filler gems with many versions, interleaved
// like real publishing, then the benchmark targets. Gems are built in
// parallel (BuildGem is the slow part).
func content(fillers int, seed uint64) ([]testupstream.Item, error) {
	rng := rand.New(rand.NewPCG(seed, 0x6a656d70))
	names := make([]string, fillers)
	for i := range names {
		names[i] = fillerName(i)
	}
	// Versions per gem: most gems have a ~1-3 KB /info, a quarter up to
	// ~10 KB, a few up to ~30 KB.
	type gemPlan struct {
		name     string
		versions int
	}
	plans := make([]gemPlan, 0, fillers+2)
	for _, n := range names {
		var v int
		switch x := rng.Float64(); {
		case x < 0.70:
			v = 8 + rng.IntN(13) // 8-20
		case x < 0.95:
			v = 20 + rng.IntN(60) // 20-79
		default:
			v = 80 + rng.IntN(110) // 80-189
		}
		plans = append(plans, gemPlan{n, v})
	}
	plans = append(plans, gemPlan{smallGem, 12}, gemPlan{largeGem, 190})

	// Specs, per gem in version order, with 0-3 runtime dependencies.
	perGem := make([][]testupstream.GemSpec, len(plans))
	for i, p := range plans {
		specs := make([]testupstream.GemSpec, p.versions)
		major, minor, patch := rng.IntN(3), 0, 0
		for j := range specs {
			switch x := rng.IntN(10); {
			case x == 0 && j > 0:
				major, minor, patch = major+1, 0, 0
			case x < 4 && j > 0:
				minor, patch = minor+1, 0
			case j > 0:
				patch++
			}
			spec := testupstream.GemSpec{
				Name:    p.name,
				Version: fmt.Sprintf("%d.%d.%d", major, minor, patch),
			}
			for k := rng.IntN(4); k > 0; k-- {
				dep := names[rng.IntN(len(names))]
				if dep == p.name || hasDep(spec.Deps, dep) {
					continue
				}
				req := [...]string{">= 0", "~> 1.0", ">= 1.2, < 3", "~> 2.4.1"}[rng.IntN(4)]
				spec.Deps = append(spec.Deps, testupstream.Dep{Name: dep, Requirement: req})
			}
			if rng.IntN(3) == 0 {
				spec.RequiredRuby = ">= 2.7.0"
			}
			specs[j] = spec
		}
		perGem[i] = specs
	}

	// Interleave: repeatedly pick a gem with versions left (weighted by
	// what is left), keeping each gem's versions in order.
	var order []testupstream.GemSpec
	next := make([]int, len(perGem))
	left := 0
	for _, s := range perGem {
		left += len(s)
	}
	live := make([]int, len(perGem))
	for i := range live {
		live[i] = i
	}
	for left > 0 {
		k := rng.IntN(len(live))
		g := live[k]
		order = append(order, perGem[g][next[g]])
		next[g]++
		left--
		if next[g] == len(perGem[g]) {
			live[k] = live[len(live)-1]
			live = live[:len(live)-1]
		}
	}

	items := make([]testupstream.Item, len(order), len(order)+3)
	if err := buildAll(order, items); err != nil {
		return nil, err
	}
	// The padded gems come last, so the last /versions line is the 50 MB
	// gem's (what "a client one version behind" lacks).
	for _, t := range []struct {
		name    string
		padding int
	}{{gem10K, 10 << 10}, {gem1M, 1 << 20}, {gem50M, 50 << 20}} {
		spec := testupstream.GemSpec{Name: t.name, Version: benchVers}
		// The gem's metadata, checksums and tar headers make up the rest.
		padded := spec
		padded.Padding = 1
		probe, err := testupstream.BuildGem(padded)
		if err != nil {
			return nil, err
		}
		padded.Padding = max(t.padding-(len(probe)-1), 1)
		gem, err := testupstream.BuildGem(padded)
		if err != nil {
			return nil, err
		}
		items = append(items, testupstream.Item{Spec: spec, Gem: gem})
	}
	return items, nil
}

// hasDep reports whether deps names dep.
func hasDep(deps []testupstream.Dep, dep string) bool {
	for _, d := range deps {
		if d.Name == dep {
			return true
		}
	}
	return false
}

// fillerName returns a plausible, unique gem name for index i.
func fillerName(i int) string {
	a := [...]string{"active", "rack", "json", "net", "aws", "rubo", "rails", "faraday", "nokogiri", "puma", "sidekiq", "graphql", "dry", "rspec", "capy", "omni"}
	b := [...]string{"core", "http", "support", "client", "auth", "rb", "ext", "cop", "model", "view", "jobs", "cache", "parser", "config", "types", "mocks"}
	return fmt.Sprintf("%s-%s-%d", a[i%len(a)], b[(i/len(a))%len(b)], i)
}

// buildAll builds the .gem of every spec into items, in parallel.
func buildAll(specs []testupstream.GemSpec, items []testupstream.Item) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	workers := runtime.NumCPU()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(specs); i += workers {
				gem, err := testupstream.BuildGem(specs[i])
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				items[i] = testupstream.Item{Spec: specs[i], Gem: gem}
			}
		}()
	}
	wg.Wait()
	return first
}

// manifest describes the benchmark targets.
type manifest struct {
	gems, versions        int
	versionsLen           int
	versionsETag          string
	versionsOldLen        int
	versionsOldETag       string
	smallInfoLen          int
	largeInfoLen          int
	apiLen                int
	gem10KLen, gem1MLen   int
	gem50MLen             int
	infoSizes             string
	versionsLastLineBytes int
}

// describe reads the published content back from up.
func describe(up *testupstream.Server, versions, fillers int) manifest {
	m := manifest{gems: fillers + 5, versions: versions}
	vb, _ := up.Body("/versions")
	m.versionsLen = len(vb)
	m.versionsETag = quotedMD5(vb)
	// A client one version behind has the file without its last line.
	trimmed := bytes.TrimSuffix(vb, []byte("\n"))
	cut := bytes.LastIndexByte(trimmed, '\n') + 1
	m.versionsOldLen = cut
	m.versionsOldETag = quotedMD5(vb[:cut])
	m.versionsLastLineBytes = len(vb) - cut
	sb, _ := up.Body("/info/" + smallGem)
	m.smallInfoLen = len(sb)
	lb, _ := up.Body("/info/" + largeGem)
	m.largeInfoLen = len(lb)
	var sizes []int
	for i := 0; i < fillers; i++ {
		b, _ := up.Body("/info/" + fillerName(i))
		sizes = append(sizes, len(b))
	}
	sort.Ints(sizes)
	if len(sizes) > 0 {
		m.infoSizes = fmt.Sprintf("min %d, median %d, p95 %d, max %d bytes",
			sizes[0], sizes[len(sizes)/2], sizes[len(sizes)*95/100], sizes[len(sizes)-1])
	}
	gemPath := func(name string) string { return "/gems/" + name + "-" + benchVers + ".gem" }
	m.gem10KLen = up.ServedSize(gemPath(gem10K))
	m.gem1MLen = up.ServedSize(gemPath(gem1M))
	m.gem50MLen = up.ServedSize(gemPath(gem50M))
	m.apiLen = up.ServedSize("/api/v1/gems/" + smallGem + ".json")
	return m
}

// quotedMD5 returns the ETag rubygems.org gives b: its quoted hex MD5.
func quotedMD5(b []byte) string {
	s := md5.Sum(b)
	return `"` + hex.EncodeToString(s[:]) + `"`
}

// shell renders m as KEY='value' lines.
func (m manifest) shell(listen string) string {
	var b strings.Builder
	kv := func(k string, v any) { fmt.Fprintf(&b, "%s='%v'\n", k, v) }
	kv("UP_ADDR", listen)
	kv("UP_GEMS", m.gems)
	kv("UP_VERSIONS_PUBLISHED", m.versions)
	kv("UP_INFO_SIZES", m.infoSizes)
	kv("SMALL_INFO_PATH", "/info/"+smallGem)
	kv("SMALL_INFO_BYTES", m.smallInfoLen)
	kv("LARGE_INFO_PATH", "/info/"+largeGem)
	kv("LARGE_INFO_BYTES", m.largeInfoLen)
	kv("API_PATH", "/api/v1/gems/"+smallGem+".json")
	kv("API_BYTES", m.apiLen)
	kv("VERSIONS_PATH", "/versions")
	kv("VERSIONS_BYTES", m.versionsLen)
	kv("VERSIONS_ETAG", m.versionsETag)
	kv("VERSIONS_OLD_BYTES", m.versionsOldLen)
	kv("VERSIONS_OLD_ETAG", m.versionsOldETag)
	kv("VERSIONS_TAIL_BYTES", m.versionsLastLineBytes+1)
	kv("GEM10K_PATH", "/gems/"+gem10K+"-"+benchVers+".gem")
	kv("GEM10K_BYTES", m.gem10KLen)
	kv("GEM1M_PATH", "/gems/"+gem1M+"-"+benchVers+".gem")
	kv("GEM1M_BYTES", m.gem1MLen)
	kv("GEM50M_PATH", "/gems/"+gem50M+"-"+benchVers+".gem")
	kv("GEM50M_BYTES", m.gem50MLen)
	kv("GEM50M_INFO_PATH", "/info/"+gem50M)
	return b.String()
}

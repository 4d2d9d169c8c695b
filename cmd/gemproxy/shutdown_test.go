package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// TestShutdownFinishesGemDownload sends SIGTERM while a client slowly
// downloads a large cached gem: /readyz turns 503 at once, the download
// completes byte for byte, and the process then exits 0.
func TestShutdownFinishesGemDownload(t *testing.T) {
	up, ts := testupstream.Start(t, testupstream.Options{})
	spec := testupstream.GemSpec{Name: "large", Version: "1.0.0", Padding: 8 << 20}
	up.Publish(spec, nil)
	want, _ := testupstream.BuildGem(spec)
	cfg := writeFile(t, "gemproxy.toml", "[server]\nshutdown_grace = \"200ms\"\ndrain_timeout = \"30s\"\n")
	s := startServer(t, nil, "--upstream", ts.URL, "--data-dir", t.TempDir(), "--config", cfg)
	if _, code, err := s.fetchWithin("/gems/large-1.0.0.gem", 30*time.Second); err != nil || code != 200 {
		t.Fatalf("warming: %d %v", code, err)
	}

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, ReadBufferSize: 4 << 10}}
	resp, err := client.Get("http://" + s.addr + "/gems/large-1.0.0.gem")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got bytes.Buffer
	if _, err := io.CopyN(&got, resp.Body, 64<<10); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	waitFor(t, "readyz to answer 503", func() bool {
		code, err := s.get("/readyz")
		return err == nil && code == http.StatusServiceUnavailable
	})
	// Keep reading slowly past the grace period.
	buf := make([]byte, 256<<10)
	for {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("download cut during shutdown after %d of %d bytes: %v\n%s", got.Len(), len(want), err, s.stderr)
		}
		time.Sleep(25 * time.Millisecond)
	}
	if d := time.Since(signalled); d < 400*time.Millisecond {
		t.Fatalf("the download ended %v after SIGTERM: not past the 200ms grace period, proves nothing", d)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("downloaded %d bytes, want %d identical bytes", got.Len(), len(want))
	}
	if code := s.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit status %d after draining:\n%s", code, s.stderr)
	}
}

// accessLine is the part of an access line TestAccessLogKeepsEveryLineOnSIGTERM
// checks.
type accessLine struct {
	Endpoint string `json:"endpoint"`
	Status   int    `json:"status"`
	Cache    string `json:"cache"`
}

// accessLines returns the access lines of a gemproxy stderr in format.
func accessLines(t *testing.T, format, stderr string) []accessLine {
	t.Helper()
	text := regexp.MustCompile(`^time=\S+ level=INFO msg=request method=GET endpoint=(\S+) status=(\d+) bytes=\d+ duration_s=\d+\.\d{6} cache=(\S+)$`)
	var out []accessLine
	for line := range strings.Lines(stderr) {
		var l accessLine
		switch format {
		case "json":
			var msg struct {
				Msg string `json:"msg"`
			}
			if json.Unmarshal([]byte(line), &msg) != nil || msg.Msg != "request" {
				continue
			}
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("%v: %q", err, line)
			}
		default:
			m := text.FindStringSubmatch(strings.TrimSuffix(line, "\n"))
			if m == nil {
				continue
			}
			l.Endpoint = m[1]
			l.Status, _ = strconv.Atoi(m[2])
			l.Cache = m[3]
		}
		out = append(out, l)
	}
	return out
}

// TestAccessLogKeepsEveryLineOnSIGTERM sends requests, then SIGTERMs
// gemproxy while one more is in flight and lets it finish once the
// listener is closed: stderr holds exactly one access line per request,
// in text and JSON, the buffered ones and the last one included; at log
// level warn it holds none.
func TestAccessLogKeepsEveryLineOnSIGTERM(t *testing.T) {
	// n requests over gems distinct names: the first for each is a miss,
	// the others hits.
	const n, gems = 30, 5
	cases := []struct {
		format, level string
		want          int
	}{
		{format: "text", level: "info", want: n + 1},
		{format: "json", level: "info", want: n + 1},
		{format: "text", level: "warn", want: 0},
	}
	for _, tc := range cases {
		t.Run(tc.format+"/"+tc.level, func(t *testing.T) {
			up := newFakeUpstream(t)
			cfg := writeFile(t, "gemproxy.toml", "[server]\nshutdown_grace = \"0s\"\ndrain_timeout = \"10s\"\n")
			s := startServer(t, nil, "--upstream", up.URL, "--data-dir", t.TempDir(), "--config", cfg,
				"--log-format", tc.format, "--log-level", tc.level)
			for i := range n {
				if _, code, err := s.fetch(fmt.Sprintf("/api/v1/gems/gem%d.json", i%gems)); err != nil || code != http.StatusOK {
					t.Fatalf("request %d: %d %v", i, code, err)
				}
			}
			slow := make(chan error, 1)
			go func() {
				// Gated by releaseSlow; the timeout only bounds a hang.
				_, code, err := s.fetchWithin("/api/v1/gems/slow.json", 30*time.Second)
				if err == nil && code != http.StatusOK {
					err = fmt.Errorf("status %d", code)
				}
				slow <- err
			}()
			<-up.slowStarted
			if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the listener to close after SIGTERM", func() bool {
				_, err := s.get("/healthz")
				return err != nil
			})
			close(up.releaseSlow)
			if err := <-slow; err != nil {
				t.Fatalf("in-flight request during shutdown: %v", err)
			}
			if code := s.wait(t, 10*time.Second); code != 0 {
				t.Fatalf("exit %d after SIGTERM, want 0:\n%s", code, s.stderr)
			}
			lines := accessLines(t, tc.format, s.stderr.String())
			if len(lines) != tc.want {
				t.Fatalf("%d access lines for %d requests, want %d:\n%s", len(lines), n+1, tc.want, s.stderr)
			}
			results := map[string]int{}
			for _, l := range lines {
				if l.Endpoint != "api_gem" || l.Status != http.StatusOK {
					t.Fatalf("access line %+v, want api_gem 200:\n%s", l, s.stderr)
				}
				results[l.Cache]++
			}
			// The slow request is a miss too.
			if want := map[string]int{"miss": gems + 1, "hit": n - gems}; tc.want > 0 && !maps.Equal(results, want) {
				t.Fatalf("cache fields %v, want %v:\n%s", results, want, s.stderr)
			}
		})
	}
}

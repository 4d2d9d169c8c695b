package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// TestPrometheusScrapesMetrics runs Debian's Prometheus server against
// gemproxy's /metrics and reads a counter back through its HTTP API: proof
// that the exposition works for the real consumer.
func TestPrometheusScrapesMetrics(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		msg := "prometheus not found: apt-get install prometheus (.ci/run does) to run this test"
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " (failing because CI is set)")
		}
		t.Skip(msg)
	}
	e := start(t, testupstream.Options{Marshal: noRuby})
	e.up.Publish(testupstream.GemSpec{Name: "scraped", Version: "1.0.0"}, nil)
	for i := 0; i < 3; i++ {
		e.get("/info/scraped")
	}

	dir := t.TempDir()
	target := strings.TrimPrefix(e.proxyURL, "http://")
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gemproxy\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := testupstream.FreeAddr(t)
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	query := `sum(gemproxy_http_requests_total{endpoint="info",method="GET",code="2xx"})`
	deadline := time.Now().Add(60 * time.Second)
	for {
		v, up, err := promQuery(promAddr, query)
		if err == nil && up && v >= 3 {
			t.Logf("Prometheus read %s = %v", query, v)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus never saw the counter (last: %v %v %v)\n%s", v, up, err, logs.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The scrape itself was healthy.
	if v, _, err := promQuery(promAddr, `up{job="gemproxy"}`); err != nil || v != 1 {
		t.Fatalf("up{job=gemproxy} = %v (%v)", v, err)
	}
}

// promQuery runs an instant query and returns the first sample's value and
// whether any sample came back.
func promQuery(addr, q string) (float64, bool, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, false, err
	}
	if r.Status != "success" || len(r.Data.Result) == 0 {
		return 0, false, nil
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, true, err
}

package main

import (
	"bytes"
	"io"
	"net/http"
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

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/rubyfmt"
	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// The users and API keys the write tests configure on the test upstream.
const (
	devUser   = "dev@example.com"   // owns the seeded gems and the first three keys
	otherUser = "other@example.com" // a second account, used as a new owner
	otpRight  = "731904"            // the one valid OTP code
	otpWrong  = "000000"            // a wrong OTP code
	// basicPassword is devUser's HTTP Basic password (api_key, profile).
	basicPassword = "hunter2-Basic-Secret"
	// proxyUASuffix is what gemproxy appends to the client's User-Agent.
	proxyUASuffix = " gemproxy/e2e"
)

// rawKey makes a deterministic key shaped like rubygems.org's.
func rawKey(name string) string {
	s := sha256.Sum256([]byte("gemproxy e2e key " + name))
	return "rubygems_" + hex.EncodeToString(s[:24])
}

var (
	keyFull    = rawKey("full")    // devUser, every scope, no MFA
	keyMFA     = rawKey("mfa")     // devUser, every scope, key-level MFA: needs OTP
	keyRead    = rawKey("read")    // devUser, index_rubygems only
	keyOther   = rawKey("other")   // otherUser, every scope, owns nothing
	keyUnknown = rawKey("unknown") // not configured upstream
)

// writeOptions configures a test upstream with the write-test accounts.
func writeOptions() testupstream.Options {
	return testupstream.Options{
		Marshal:    rubyfmt.RubyMarshal,
		Owner:      devUser,
		OTP:        otpRight,
		BasicUsers: map[string]string{devUser: basicPassword},
		Keys: map[string]testupstream.KeyInfo{
			keyFull:  {Owner: devUser},
			keyMFA:   {Owner: devUser, MFA: true},
			keyRead:  {Owner: devUser, Scopes: []string{"index_rubygems"}},
			keyOther: {Owner: otherUser},
		},
	}
}

// writeRig runs every write twice from one client: once straight at a test
// upstream (direct) and once through gemproxy at a second test upstream
// with the same configuration and seed (proxied), so each side starts
// from the same state and goes through the same history.
type writeRig struct {
	t         *testing.T
	direct    *testupstream.Server
	directURL string
	e         *env
	c         *client
	gemDir    string
}

// newWriteRig starts both sides, seeds both upstreams with the same gems
// and gives the client a credentials file (mode 0600) with named keys:
// :ci: (keyFull) and :mfa: (keyMFA). The client is of flavour f.
func newWriteRig(t *testing.T, f flavour, seed ...testupstream.GemSpec) *writeRig {
	t.Helper()
	direct, ts := testupstream.Start(t, writeOptions())
	e := start(t, writeOptions())
	items := make([]testupstream.Item, len(seed))
	for i, s := range seed {
		items[i] = testupstream.Item{Spec: s}
	}
	for _, up := range []*testupstream.Server{direct, e.up} {
		if len(items) > 0 {
			if err := up.PublishAll(items); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := newClient(t, f)
	cred := filepath.Join(c.home, ".gem", "credentials")
	if err := os.MkdirAll(filepath.Dir(cred), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cred, []byte("---\n:ci: "+keyFull+"\n:mfa: "+keyMFA+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cred, 0o600); err != nil {
		t.Fatal(err)
	}
	return &writeRig{t: t, direct: direct, directURL: ts.URL, e: e, c: c, gemDir: t.TempDir()}
}

// gemFile builds spec with testupstream.BuildGem and writes it to a file
// for gem push.
func (r *writeRig) gemFile(spec testupstream.GemSpec) string {
	r.t.Helper()
	return writeGemFile(r.t, r.gemDir, spec)
}

// writeGemFile builds spec into dir/FULL.gem.
func writeGemFile(t *testing.T, dir string, spec testupstream.GemSpec) string {
	t.Helper()
	b, err := testupstream.BuildGem(spec)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, spec.Name+"-"+spec.Version+".gem")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeStep is one gem command run on both sides.
type writeStep struct {
	name string
	// args are the gem arguments; "--host HOST" is appended.
	args []string
	// env is added to the client's environment (GEM_HOST_API_KEY...).
	env []string
	// stdin is fed to gem on a pipe. RubyGems 3.3 asks for the OTP only on
	// a terminal (StreamUI#ask returns nil otherwise), so a piped code is
	// never read: the retry goes out without OTP.
	stdin string
	// term runs gem on a pseudo-terminal and types typed (plus a newline)
	// at the "Code:" prompt.
	term  bool
	typed string
	// ok is whether gem must exit 0.
	ok bool
	// want are texts the output must contain.
	want []string
	// calls is how many /api/ requests the upstream must receive, not
	// counting the WebAuthn request of a prompted flavour.
	calls int
	// prompted is whether the upstream answers that an OTP is needed and
	// gem asks for one (see flavour.webauthn).
	prompted bool
}

// sideResult is what one side of a step produced.
type sideResult struct {
	out  string // client output, host URL replaced by HOST
	code int    // exit status
	reqs []testupstream.Request
}

// step runs st directly and through gemproxy and fails the test unless the
// client printed the same thing and the upstream received the same
// requests. It returns the proxied side.
func (r *writeRig) step(st writeStep) sideResult {
	r.t.Helper()
	d := r.runSide(st, r.direct, r.directURL)
	p := r.runSide(st, r.e.up, r.e.proxyURL)
	var calls []string
	for _, q := range p.reqs {
		calls = append(calls, fmt.Sprintf("  %s %s Content-Type=%q OTP=%q Authorization=%.13s… body=%d bytes sha256=%.12s… UA=%q",
			q.Method, q.Path, q.Header.Get("Content-Type"), q.Header.Values("Otp"), q.Header.Get("Authorization"), q.BodyLen, q.BodySHA256, q.Header.Get("User-Agent")))
	}
	r.t.Logf("%s: gem %s --host HOST  (exit %d)\n%s\nupstream received through gemproxy:\n%s",
		st.name, strings.Join(st.args, " "), p.code, p.out, strings.Join(calls, "\n"))
	wantCalls := st.calls
	if st.prompted && r.c.f.webauthn {
		wantCalls++
	}
	compareSides(r.t, st, wantCalls, d, p, hostOf(r.e.upURL))
	for _, q := range p.reqs {
		if ua := q.Header.Get("User-Agent"); !strings.Contains(ua, "RubyGems/"+r.c.f.rubygems+" ") {
			r.t.Errorf("%s: %s %s came from %q, want RubyGems %s", st.name, q.Method, q.Path, ua, r.c.f.rubygems)
		}
	}
	return p
}

// runSide runs st against host and collects what the upstream saw.
func (r *writeRig) runSide(st writeStep, up *testupstream.Server, host string) sideResult {
	r.t.Helper()
	up.Reset()
	args := append(append([]string{}, st.args...), "--host", host)
	out, code := r.c.gemTerm(st.stdin, st.term, st.typed, st.env, args...)
	var reqs []testupstream.Request
	for _, q := range up.Log() {
		if strings.HasPrefix(q.Path, "/api/") {
			reqs = append(reqs, q)
		}
	}
	return sideResult{out: strings.ReplaceAll(out, host, "HOST"), code: code, reqs: reqs}
}

// compareSides fails the test unless direct and proxied runs match and
// the upstream received calls API requests on each side.
func compareSides(t *testing.T, st writeStep, calls int, d, p sideResult, upHost string) {
	t.Helper()
	if (p.code == 0) != st.ok {
		t.Errorf("%s: exit status %d through gemproxy, want success=%v", st.name, p.code, st.ok)
	}
	if d.code != p.code {
		t.Errorf("%s: exit status %d direct, %d through gemproxy", st.name, d.code, p.code)
	}
	if d.out != p.out {
		t.Errorf("%s: client output differs\n--- direct:\n%s\n--- through gemproxy:\n%s", st.name, d.out, p.out)
	}
	for _, w := range st.want {
		if !strings.Contains(p.out, w) {
			t.Errorf("%s: output lacks %q:\n%s", st.name, w, p.out)
		}
	}
	if len(d.reqs) != calls || len(p.reqs) != calls {
		t.Errorf("%s: upstream received %d API request(s) direct and %d through gemproxy, want %d:\ndirect: %s\nproxied: %s",
			st.name, len(d.reqs), len(p.reqs), calls, describe(d.reqs), describe(p.reqs))
		return
	}
	for i := range d.reqs {
		for _, diff := range diffRequests(d.reqs[i], p.reqs[i], upHost) {
			t.Errorf("%s: request %d (%s %s): %s", st.name, i+1, d.reqs[i].Method, d.reqs[i].Path, diff)
		}
	}
}

// describe summarises logged requests.
func describe(reqs []testupstream.Request) string {
	var parts []string
	for _, q := range reqs {
		parts = append(parts, q.Method+" "+q.Path)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// notForwarded are headers that legitimately differ: hop-by-hop ones
// (gemproxy must drop them), User-Agent and Host (checked separately).
var notForwarded = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true, "Transfer-Encoding": true,
	"Upgrade": true, "Proxy-Connection": true, "Proxy-Authorization": true, "User-Agent": true, "Host": true,
}

// proxyAdded are headers a proxy may add; tolerated only on the proxied side.
var proxyAdded = map[string]bool{"X-Forwarded-For": true, "X-Forwarded-Proto": true, "X-Forwarded-Host": true, "Forwarded": true, "Via": true}

// diffRequests lists how the proxied request differs from the direct one:
// method, path, raw query, body SHA-256 and length, Authorization, OTP,
// Content-Type and every other end-to-end header exactly; User-Agent only
// by the appended " gemproxy/e2e"; Host must be the upstream's.
func diffRequests(d, p testupstream.Request, upHost string) []string {
	var diffs []string
	check := func(what, dv, pv string) {
		if dv != pv {
			diffs = append(diffs, fmt.Sprintf("%s: direct %s, through gemproxy %s", what, dv, pv))
		}
	}
	check("method", d.Method, p.Method)
	check("path", d.Path, p.Path)
	check("raw query", fmt.Sprintf("%q", d.RawQuery), fmt.Sprintf("%q", p.RawQuery))
	check("body SHA-256", d.BodySHA256, p.BodySHA256)
	check("body length", fmt.Sprint(d.BodyLen), fmt.Sprint(p.BodyLen))
	names := map[string]bool{"Authorization": true, "Otp": true, "Content-Type": true}
	for n := range d.Header {
		names[n] = true
	}
	for n := range p.Header {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		if notForwarded[n] || (proxyAdded[n] && len(d.Header.Values(n)) == 0) {
			continue
		}
		check("header "+n, fmt.Sprintf("%q", d.Header.Values(n)), fmt.Sprintf("%q", p.Header.Values(n)))
	}
	for _, h := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Upgrade"} {
		if v := p.Header.Values(h); len(v) != 0 {
			diffs = append(diffs, fmt.Sprintf("hop-by-hop header %s %q reached the upstream through gemproxy", h, v))
		}
	}
	check("User-Agent", fmt.Sprintf("%q", d.Header.Get("User-Agent")+proxyUASuffix), fmt.Sprintf("%q", p.Header.Get("User-Agent")))
	if got := p.Header.Get("Host"); got != upHost {
		diffs = append(diffs, fmt.Sprintf("Host through gemproxy is %q, want the upstream's %q", got, upHost))
	}
	return diffs
}

// hostOf returns host:port of a URL.
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	return u.Host
}

// ptyScript runs ARGV[1..] on a pseudo-terminal, copies its output to
// stdout, types ARGV[0] + newline once "Code:" was printed, and exits with
// the child's status.
const ptyScript = `
code = ARGV.shift
r, w, pid = PTY.spawn(*ARGV)
seen = +""
typed = false
begin
  loop do
    chunk = r.readpartial(4096)
    seen << chunk
    $stdout.write(chunk)
    $stdout.flush
    if !typed && seen.include?("Code:")
      w.write(code + "\n")
      typed = true
    end
  end
rescue EOFError, Errno::EIO
end
Process.wait(pid)
exit($?.exitstatus || 1)
`

// gemTerm runs gem with extra environment and the given stdin (a pipe), or
// with term on a pseudo-terminal typing typed at the OTP prompt. It returns
// the combined output and the exit status. (client.run has no stdin and
// fails on a non-zero exit.)
func (c *client) gemTerm(stdin string, term bool, typed string, extraEnv []string, args ...string) (string, int) {
	c.t.Helper()
	argv := c.command("gem", args...)
	if term {
		argv = append([]string{"ruby", "-rpty", "-e", ptyScript, "--", typed}, argv...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = c.home
	cmd.Env = append(append([]string{}, c.env...), extraEnv...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		c.t.Fatalf("gem %s timed out:\n%s", strings.Join(args, " "), out.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	}
	c.t.Fatalf("gem %s: %v\n%s", strings.Join(args, " "), err, out.String())
	return "", -1
}

// apiKey is the environment passing key as GEM_HOST_API_KEY.
func apiKey(key string, more ...string) []string {
	return append([]string{"GEM_HOST_API_KEY=" + key}, more...)
}

// gemInstall installs name (at version when non-empty) through gemproxy
// only, into a fresh directory, and returns the output.
func (r *writeRig) gemInstall(name, version string, allowFail bool) (string, error) {
	r.t.Helper()
	args := []string{"install", name, "--clear-sources", "--source", r.e.proxyURL + "/",
		"--install-dir", r.t.TempDir(), "--no-document"}
	if version != "" {
		args = append(args, "-v", version)
	}
	return r.c.run(r.c.home, allowFail, "gem", args...)
}

// infoRequests counts upstream requests for /info/name.
func infoRequests(up *testupstream.Server, name string) int {
	return up.Requests("/info/" + name)
}

func TestPushThroughProxyMatchesDirect(t *testing.T) {
	forEachFlavour(t, pushThroughProxyMatchesDirect)
}

// pushThroughProxyMatchesDirect pushes gems directly and through
// gemproxy (OTP, scopes, a large gem) and checks the pushed versions are
// visible through gemproxy at once.
func pushThroughProxyMatchesDirect(t *testing.T, f flavour) {
	r := newWriteRig(t, f, testupstream.GemSpec{Name: "wgem", Version: "1.0.0"})

	// Warm gemproxy: RubyGems and Bundler resolve wgem 1.0.0 through it, and
	// a second read of /info/wgem is a cache hit (default TTLs).
	out, _ := r.gemInstall("wgem", "", false)
	if !strings.Contains(out, "Successfully installed wgem-1.0.0") {
		t.Fatalf("warm-up gem install:\n%s", out)
	}
	r.c.mirror("https://rubygems.org", r.e.proxyURL)
	appDir := app(t, "source \"https://rubygems.org\"\ngem \"wgem\"\n", "")
	r.c.run(appDir, false, "bundle", "lock")
	lockHas(t, appDir, "wgem (1.0.0)")
	before := infoRequests(r.e.up, "wgem")
	r.e.get("/info/wgem")
	if n := infoRequests(r.e.up, "wgem"); n != before {
		t.Fatalf("/info/wgem was not served from gemproxy's cache after warm-up (%d upstream requests, was %d)", n, before)
	}

	mfa100 := r.gemFile(testupstream.GemSpec{Name: "mfagem", Version: "1.0.0"})
	mfa110 := r.gemFile(testupstream.GemSpec{Name: "mfagem", Version: "1.1.0"})
	newgem := r.gemFile(testupstream.GemSpec{Name: "newgem", Version: "0.1.0"})
	wgem110 := r.gemFile(testupstream.GemSpec{Name: "wgem", Version: "1.1.0"})
	big := r.gemFile(testupstream.GemSpec{Name: "biggem", Version: "1.0.0", Padding: 6 << 20})

	steps := []writeStep{
		{name: "no OTP (MFA key; the right code on a pipe is not read)", args: []string{"push", mfa100}, env: apiKey(keyMFA), stdin: otpRight + "\n",
			want: []string{"Pushing gem to HOST...", "You have enabled multi-factor authentication. Please enter OTP code.", testupstream.TextOTPMissing}, calls: 2, prompted: true},
		{name: "wrong OTP", args: []string{"push", mfa100, "--otp", otpWrong}, env: apiKey(keyMFA),
			want: []string{testupstream.TextOTPIncorrect}, calls: 1},
		{name: "right OTP", args: []string{"push", mfa100, "--otp", otpRight}, env: apiKey(keyMFA), ok: true,
			want: []string{"Pushing gem to HOST...\nSuccessfully registered gem: mfagem (1.0.0)\n"}, calls: 1},
		{name: "re-push (OTP from GEM_HOST_OTP_CODE)", args: []string{"push", mfa100}, env: apiKey(keyMFA, "GEM_HOST_OTP_CODE="+otpRight),
			want: []string{testupstream.TextRepush}, calls: 1},
		{name: "empty line typed at the OTP prompt (terminal)", args: []string{"push", mfa110}, env: apiKey(keyMFA), term: true, typed: "",
			want: []string{"Code:", testupstream.TextOTPMissing}, calls: 2, prompted: true},
		{name: "OTP typed at the prompt (terminal)", args: []string{"push", mfa110}, env: apiKey(keyMFA), term: true, typed: otpRight, ok: true,
			want: []string{"Code:", "Successfully registered gem: mfagem (1.1.0)"}, calls: 2, prompted: true},
		{name: "unknown key", args: []string{"push", newgem}, env: apiKey(keyUnknown),
			want: []string{testupstream.TextPleaseSignUp}, calls: 1},
		{name: "read-only key", args: []string{"push", newgem}, env: apiKey(keyRead),
			want: []string{testupstream.TextInsufficientScope}, calls: 1},
		{name: "large gem (streamed body)", args: []string{"push", big}, env: apiKey(keyFull), ok: true,
			want: []string{"Successfully registered gem: biggem (1.0.0)"}, calls: 1},
		{name: "key from the credentials file (--key ci)", args: []string{"push", wgem110, "--key", "ci"}, ok: true,
			want: []string{"Successfully registered gem: wgem (1.1.0)"}, calls: 1},
	}
	for _, st := range steps {
		p := r.step(st)
		if st.term && len(p.reqs) >= 2 {
			// The retry carries the typed code (an empty line is sent as an
			// empty OTP header), the first call none.
			if got := p.reqs[0].Header.Values("Otp"); len(got) != 0 {
				t.Errorf("%s: first call carried OTP %q", st.name, got)
			}
			if got := p.reqs[len(p.reqs)-1].Header.Values("Otp"); len(got) != 1 || got[0] != st.typed {
				t.Errorf("%s: retry carried OTP %q, want [%q]", st.name, got, st.typed)
			}
		}
		if st.stdin != "" {
			for _, q := range p.reqs {
				if v := q.Header.Values("Otp"); len(v) != 0 {
					t.Errorf("%s: a call carried OTP %q (RubyGems reads no code from a pipe)", st.name, v)
				}
			}
		}
	}

	// The pushed versions are visible through gemproxy at once, although
	// /info/wgem and /versions were cached with the default 60 s TTLs.
	infoBefore := infoRequests(r.e.up, "wgem")
	out, _ = r.gemInstall("wgem", "1.1.0", false)
	if !strings.Contains(out, "Successfully installed wgem-1.1.0") {
		t.Fatalf("gem install wgem -v 1.1.0 through gemproxy right after the push:\n%s", out)
	}
	if infoRequests(r.e.up, "wgem") == infoBefore {
		t.Errorf("gemproxy answered /info/wgem after the push without asking the upstream")
	}
	out, _ = r.gemInstall("mfagem", "", false)
	if !strings.Contains(out, "Successfully installed mfagem-1.1.0") {
		t.Fatalf("gem install mfagem through gemproxy right after the push:\n%s", out)
	}
	r.c.run(appDir, false, "bundle", "lock", "--update")
	lockHas(t, appDir, "wgem (1.1.0)")

	// Control: a version published upstream behind gemproxy's back stays
	// invisible until the TTL, so the freshness above came from the
	// invalidation on push, not from an absent cache.
	r.e.up.Publish(testupstream.GemSpec{Name: "wgem", Version: "1.2.0"}, nil)
	upInfo, _ := r.e.up.Body("/info/wgem")
	if served := r.e.get("/info/wgem"); bytes.Contains(served, []byte("\n1.2.0 ")) || !bytes.Contains(upInfo, []byte("\n1.2.0 ")) {
		t.Errorf("control: /info/wgem through gemproxy already lists 1.2.0 (or the upstream does not):\n%s", served)
	}
}

func TestYankThroughProxyMatchesDirect(t *testing.T) {
	forEachFlavour(t, yankThroughProxyMatchesDirect)
}

// yankThroughProxyMatchesDirect yanks directly and through gemproxy and
// checks the yank is visible through gemproxy at once.
func yankThroughProxyMatchesDirect(t *testing.T, f flavour) {
	r := newWriteRig(t, f,
		testupstream.GemSpec{Name: "ygem", Version: "1.0.0"},
		testupstream.GemSpec{Name: "ygem", Version: "1.1.0"},
		testupstream.GemSpec{Name: "ygem", Version: "2.0.0"},
	)
	// Warm gemproxy with ygem 2.0.0 (/info, quick spec, .gem) and Bundler's view.
	out, _ := r.gemInstall("ygem", "", false)
	if !strings.Contains(out, "Successfully installed ygem-2.0.0") {
		t.Fatalf("warm-up gem install:\n%s", out)
	}
	r.c.mirror("https://rubygems.org", r.e.proxyURL)
	appDir := app(t, "source \"https://rubygems.org\"\ngem \"ygem\"\n", "")
	r.c.run(appDir, false, "bundle", "lock")
	lockHas(t, appDir, "ygem (2.0.0)")

	yank := func(extra ...string) []string { return append([]string{"yank", "ygem", "-v", "2.0.0"}, extra...) }
	// gem yank prints the response body and exits 0 whatever the status.
	steps := []writeStep{
		{name: "unknown key", args: yank(), env: apiKey(keyUnknown), ok: true,
			want: []string{"Yanking gem from HOST...\n" + testupstream.TextPleaseSignUp}, calls: 1},
		{name: "not an owner", args: yank(), env: apiKey(keyOther), ok: true,
			want: []string{testupstream.TextNoYankPermission}, calls: 1},
		{name: "read-only key", args: yank(), env: apiKey(keyRead), ok: true,
			want: []string{testupstream.TextInsufficientScope}, calls: 1},
		{name: "no OTP (MFA key, nothing typed)", args: yank(), env: apiKey(keyMFA), stdin: "\n", ok: true,
			want: []string{testupstream.TextOTPMissing}, calls: 2, prompted: true},
		{name: "wrong OTP", args: yank("--otp", otpWrong), env: apiKey(keyMFA), ok: true,
			want: []string{testupstream.TextOTPIncorrect}, calls: 1},
		{name: "right OTP (key from the credentials file)", args: yank("--otp", otpRight, "--key", "mfa"), ok: true,
			want: []string{"Yanking gem from HOST...\nSuccessfully deleted gem: ygem (2.0.0)\n"}, calls: 1},
		{name: "yank again", args: yank(), env: apiKey(keyFull), ok: true,
			want: []string{"The version 2.0.0 does not exist."}, calls: 1},
		{name: "unknown gem", args: []string{"yank", "nosuchgem", "-v", "1.0.0"}, env: apiKey(keyFull), ok: true,
			want: []string{"could not be found"}, calls: 1},
	}
	for _, st := range steps {
		p := r.step(st)
		for _, q := range p.reqs {
			if q.Method == http.MethodDelete && q.BodyLen == 0 {
				t.Errorf("%s: DELETE reached the upstream without its form body", st.name)
			}
		}
	}

	// The yank is visible through gemproxy at once.
	out, _ = r.gemInstall("ygem", "", false)
	if !strings.Contains(out, "Successfully installed ygem-1.1.0") {
		t.Fatalf("gem install ygem through gemproxy right after the yank:\n%s", out)
	}
	if out, err := r.gemInstall("ygem", "2.0.0", true); err == nil {
		t.Fatalf("the yanked ygem 2.0.0 still installs through gemproxy:\n%s", out)
	}
	// Bundler 2.3's `bundle lock --update` cannot drop a locked version
	// that was yanked ("Could not find gem 'ygem x86_64-linux'"), directly
	// against the upstream too; re-resolve from scratch with the same
	// (warm) compact-index cache instead.
	if err := os.Remove(filepath.Join(appDir, "Gemfile.lock")); err != nil {
		t.Fatal(err)
	}
	r.c.run(appDir, false, "bundle", "lock")
	lockHas(t, appDir, "ygem (1.1.0)")
	resp, err := http.Get(r.e.proxyURL + "/gems/ygem-2.0.0.gem")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("gemproxy still serves the yanked /gems/ygem-2.0.0.gem")
	}
}

func TestOwnerThroughProxyMatchesDirect(t *testing.T) {
	forEachFlavour(t, ownerThroughProxyMatchesDirect)
}

// ownerThroughProxyMatchesDirect adds and removes owners directly and
// through gemproxy.
func ownerThroughProxyMatchesDirect(t *testing.T, f flavour) {
	r := newWriteRig(t, f, testupstream.GemSpec{Name: "ogem", Version: "1.0.0"})
	add := func(extra ...string) []string {
		return append([]string{"owner", "ogem", "--add", otherUser}, extra...)
	}
	// gem owner: POST/DELETE .../owners (form email=...), then
	// GET .../owners.yaml (with Authorization) to list the owners.
	steps := []writeStep{
		{name: "add, unknown key", args: add(), env: apiKey(keyUnknown),
			want: []string{"Adding " + otherUser + ": " + testupstream.TextPleaseSignUp}, calls: 1},
		{name: "add, read-only key", args: add(), env: apiKey(keyRead),
			want: []string{"Adding " + otherUser + ": " + testupstream.TextInsufficientScope}, calls: 1},
		{name: "add, no OTP (MFA key, nothing typed)", args: add(), env: apiKey(keyMFA), stdin: "\n",
			want: []string{testupstream.TextOTPMissing}, calls: 2, prompted: true},
		{name: "add, wrong OTP", args: add("--otp", otpWrong), env: apiKey(keyMFA),
			want: []string{testupstream.TextOTPIncorrect}, calls: 1},
		{name: "add, right OTP", args: add("--otp", otpRight), env: apiKey(keyMFA), ok: true,
			want: []string{"other was added as an unconfirmed owner.", "Owners for gem: ogem\n- " + devUser + "\n- " + otherUser + "\n"}, calls: 2},
		{name: "add again", args: add(), env: apiKey(keyFull),
			want: []string{"Adding " + otherUser + ": User has already been taken"}, calls: 1},
		{name: "remove", args: []string{"owner", "ogem", "--remove", otherUser, "--key", "ci"}, ok: true,
			want: []string{testupstream.TextOwnerRemoved, "Owners for gem: ogem\n- " + devUser + "\n"}, calls: 2},
		{name: "remove a non-owner", args: []string{"owner", "ogem", "--remove", otherUser}, env: apiKey(keyFull),
			want: []string{"Removing " + otherUser + ": " + testupstream.TextOwnerNotFound}, calls: 1},
		{name: "list only", args: []string{"owner", "ogem"}, env: apiKey(keyFull), ok: true,
			want: []string{"Owners for gem: ogem\n- " + devUser + "\n"}, calls: 1},
	}
	for _, st := range steps {
		r.step(st)
	}
}

func TestCredentialsNeverLeakThroughProxy(t *testing.T) {
	forEachFlavour(t, credentialsNeverLeakThroughProxy)
}

// credentialsNeverLeakThroughProxy makes authenticated calls through
// gemproxy and searches its debug log, /metrics and its own error bodies
// for every secret.
func credentialsNeverLeakThroughProxy(t *testing.T, f flavour) {
	e := start(t, writeOptions())
	e.up.Publish(testupstream.GemSpec{Name: "leak", Version: "1.0.0"}, nil)
	c := newClient(t, f)
	dir := t.TempDir()
	host := []string{"--host", e.proxyURL}

	// A cached /versions, so the invalidation after the push leads to a
	// debug-level refresh line.
	e.get("/versions")

	gemRun := func(env []string, args ...string) string {
		out, _ := c.gemTerm("", false, "", env, append(args, host...)...)
		return out
	}
	out := gemRun(apiKey(keyFull), "push", writeGemFile(t, dir, testupstream.GemSpec{Name: "leak", Version: "1.1.0"}))
	if !strings.Contains(out, "Successfully registered gem: leak (1.1.0)") {
		t.Fatalf("push with keyFull:\n%s", out)
	}
	out = gemRun(apiKey(keyMFA), "push", writeGemFile(t, dir, testupstream.GemSpec{Name: "leak", Version: "1.2.0"}), "--otp", otpRight)
	if !strings.Contains(out, "Successfully registered gem: leak (1.2.0)") {
		t.Fatalf("push with keyMFA and OTP:\n%s", out)
	}
	gemRun(apiKey(keyMFA), "push", writeGemFile(t, dir, testupstream.GemSpec{Name: "leak", Version: "1.3.0"}), "--otp", otpWrong)
	gemRun(apiKey(keyUnknown), "push", writeGemFile(t, dir, testupstream.GemSpec{Name: "leak", Version: "1.4.0"}))
	gemRun(apiKey(keyRead), "push", writeGemFile(t, dir, testupstream.GemSpec{Name: "leak", Version: "1.5.0"}))
	gemRun(apiKey(keyMFA, "GEM_HOST_OTP_CODE="+otpRight), "yank", "leak", "-v", "1.1.0")
	gemRun(apiKey(keyFull), "owner", "leak", "--add", otherUser)
	e.get("/versions")
	e.get("/info/leak")
	// Reads with Basic credentials in the source URL (RubyGems sends them
	// as Authorization: Basic on every index and gem request).
	src := strings.Replace(e.proxyURL, "http://", "http://"+url.QueryEscape(devUser)+":"+basicPassword+"@", 1) + "/"
	out, _ = c.run(c.home, false, "gem", "install", "leak", "-v", "1.2.0", "--clear-sources", "--source", src,
		"--install-dir", t.TempDir(), "--no-document")
	if !strings.Contains(out, "Successfully installed leak-1.2.0") {
		t.Fatalf("gem install with Basic credentials in the source:\n%s", out)
	}
	basic := base64.StdEncoding.EncodeToString([]byte(devUser + ":" + basicPassword))
	forwarded := 0
	for _, q := range e.up.Log() {
		if q.Header.Get("Authorization") == "Basic "+basic {
			forwarded++
		}
	}
	if forwarded == 0 {
		t.Errorf("no request with the source's Basic credentials reached the upstream")
	}

	// HTTP Basic calls: create a key (its value comes back in the body), a
	// wrong password, and an authenticated read.
	call := func(method, path, auth, otp, contentType string, body []byte) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, e.proxyURL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if otp != "" {
			req.Header.Set("OTP", otp)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	status, created := call("POST", "/api/v1/api_key", "Basic "+basic, otpRight, "application/x-www-form-urlencoded",
		[]byte("name=ci&push_rubygem=true&index_rubygems=true"))
	if status != http.StatusOK || !strings.HasPrefix(string(created), "rubygems_") {
		t.Fatalf("POST /api/v1/api_key through gemproxy: %d %q", status, created)
	}
	wrongBasic := base64.StdEncoding.EncodeToString([]byte(devUser + ":wrong-" + basicPassword))
	if status, body := call("GET", "/api/v1/profile/me.yaml", "Basic "+wrongBasic, "", "", nil); status != http.StatusUnauthorized {
		t.Errorf("wrong Basic password: %d %q", status, body)
	}
	call("GET", "/api/v1/profile/me.yaml", "Basic "+basic, otpRight, "", nil)
	call("GET", "/api/v1/gems.yaml", string(created), "", "", nil)

	// Bodies gemproxy writes itself: the upstream resets the connection
	// during a push, a yank and an API-key creation.
	var ownBodies []string
	gem16 := writeGemFile(t, dir, testupstream.GemSpec{Name: "leak", Version: "1.6.0"})
	gemBytes, _ := os.ReadFile(gem16)
	for _, f := range []struct {
		method, path, auth, otp, ct string
		body                        []byte
	}{
		{"POST", "/api/v1/gems", keyMFA, otpRight, "application/octet-stream", gemBytes},
		{"DELETE", "/api/v1/gems/yank", keyFull, "", "application/x-www-form-urlencoded", []byte("gem_name=leak&version=1.2.0")},
		{"POST", "/api/v1/api_key", "Basic " + basic, otpRight, "application/x-www-form-urlencoded", []byte("name=x&push_rubygem=true")},
	} {
		e.up.SetFault(f.path, testupstream.Fault{Reset: true, Count: 1})
		status, body := call(f.method, f.path, f.auth, f.otp, f.ct, f.body)
		if status < 500 {
			t.Errorf("%s %s with the upstream resetting: status %d, want a 5xx from gemproxy", f.method, f.path, status)
		}
		ownBodies = append(ownBodies, fmt.Sprintf("%s %s -> %d %s", f.method, f.path, status, body))
	}
	// The client's own view of gemproxy's error answer.
	e.up.SetFault("/api/v1/gems", testupstream.Fault{Reset: true, Count: 1})
	ownBodies = append(ownBodies, gemRun(apiKey(keyFull), "push", gem16, "--otp", otpRight))

	metricsBody := string(e.get("/metrics"))
	logs := e.logText()
	for _, want := range []string{"endpoint=push", "endpoint=yank", "endpoint=owners", "endpoint=api_key", "level=DEBUG"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the debug log lacks %q: the search below would prove nothing", want)
		}
	}
	if !strings.Contains(metricsBody, `endpoint="push"`) {
		t.Errorf("/metrics lacks the push endpoint")
	}

	secrets := map[string]string{
		"keyFull": keyFull, "keyMFA": keyMFA, "keyRead": keyRead, "keyUnknown": keyUnknown,
		"created key": string(created), "Basic password": basicPassword,
		"Basic credentials": basic, "wrong Basic credentials": wrongBasic, "wrong Basic password": "wrong-" + basicPassword,
	}
	haystacks := map[string]string{"gemproxy log": logs, "/metrics": metricsBody, "gemproxy error bodies": strings.Join(ownBodies, "\n")}
	otp := regexp.MustCompile(`(^|[^0-9.])(` + otpRight + `|` + otpWrong + `)([^0-9]|$)`)
	for where, text := range haystacks {
		for what, secret := range secrets {
			if i := strings.Index(text, secret); i >= 0 {
				t.Errorf("%s contains the %s: …%s…", where, what, excerpt(text, i))
			}
		}
		if loc := otp.FindStringIndex(text); loc != nil {
			t.Errorf("%s contains an OTP code: …%s…", where, excerpt(text, loc[0]))
		}
	}
	t.Logf("debug log:\n%s", logs)
	t.Logf("searched %d bytes of debug log, %d bytes of /metrics and %d gemproxy error bodies:\n%s",
		len(logs), len(metricsBody), len(ownBodies), strings.Join(ownBodies, "\n"))
}

// excerpt returns up to 80 bytes around i.
func excerpt(s string, i int) string {
	return s[max(0, i-40):min(len(s), i+40)]
}

func TestPushedVersionInstallableAfterNegativeProbe(t *testing.T) {
	forEachFlavour(t, pushedVersionInstallableAfterNegativeProbe)
}

// pushedVersionInstallableAfterNegativeProbe checks that a version
// pushed through gemproxy installs at once although its artifacts were
// probed (404) just before.
func pushedVersionInstallableAfterNegativeProbe(t *testing.T, f flavour) {
	e := start(t, writeOptions())
	e.up.Publish(testupstream.GemSpec{Name: "wgem", Version: "1.0.0"}, nil)
	c := newClient(t, f)
	spec := testupstream.GemSpec{Name: "wgem", Version: "1.1.0"}
	file := writeGemFile(t, t.TempDir(), spec)
	want, _ := os.ReadFile(file)

	// A release pipeline polls gemproxy for the new artifacts before the
	// push: both are 404 (negatively cached for the default 60 s).
	probe := func(path string) (int, []byte) {
		t.Helper()
		resp, err := http.Get(e.proxyURL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	artifacts := []string{"/gems/wgem-1.1.0.gem", "/quick/Marshal.4.8/wgem-1.1.0.gemspec.rz"}
	for _, a := range artifacts {
		if status, _ := probe(a); status != http.StatusNotFound {
			t.Fatalf("GET %s before the push: %d, want 404", a, status)
		}
	}

	// With the trailing slash operators often write: RubyGems then asks
	// for //api/v1/gems.
	out, code := c.gemTerm("", false, "", apiKey(keyFull), "push", file, "--host", e.proxyURL+"/")
	if code != 0 || !strings.Contains(out, "Successfully registered gem: wgem (1.1.0)") {
		t.Fatalf("gem push through gemproxy (exit %d):\n%s", code, out)
	}

	// Right after the push, without waiting for any TTL.
	for _, a := range artifacts {
		resp, err := http.Get(e.upURL + a)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the upstream itself answers %s with %d after the push", a, resp.StatusCode)
		}
		before := e.up.Requests(a)
		status, body := probe(a)
		switch {
		case status != http.StatusOK:
			t.Errorf("GET %s through gemproxy right after the push: %d %q, answered without asking the upstream (%d upstream requests for it after the push): the pre-push 404 is still cached",
				a, status, body, e.up.Requests(a)-before)
		case a == artifacts[0] && !bytes.Equal(body, want):
			t.Errorf("GET %s: %d bytes differ from the pushed gem", a, len(body))
		}
	}
	out, err := c.run(c.home, true, "gem", "install", "wgem", "-v", "1.1.0", "--clear-sources", "--source", e.proxyURL+"/",
		"--install-dir", t.TempDir(), "--no-document")
	if err != nil || !strings.Contains(out, "Successfully installed wgem-1.1.0") {
		t.Errorf("gem install wgem -v 1.1.0 through gemproxy right after the push: %v\n%s", err, out)
	}
}

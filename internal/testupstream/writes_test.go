package testupstream

import (
	"bytes"
	"encoding/base64"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// writeKeys are the API keys of the write tests.
var writeKeys = map[string]KeyInfo{
	"key-alice":     {Owner: "alice@example.com"},
	"key-alice-ro":  {Owner: "alice@example.com", Scopes: []string{"index_rubygems"}},
	"key-alice-gem": {Owner: "alice@example.com", Gem: "other"},
	"key-bob":       {Owner: "bob@example.com"},
	"key-mfa":       {Owner: "mfa@example.com", MFA: true},
}

// newWriteServer starts a server with writeKeys, OTP 123456 and a Basic user.
func newWriteServer(t *testing.T) (*Server, string) {
	t.Helper()
	up, ts := Start(t, Options{Keys: writeKeys, OTP: "123456", BasicUsers: map[string]string{"alice@example.com": "pw", "bob@example.com": "pw2"}})
	return up, ts.URL
}

// buildGem builds a gem or fails the test.
func buildGem(t *testing.T, spec GemSpec) []byte {
	t.Helper()
	b, err := BuildGem(spec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// basic returns an HTTP Basic Authorization value.
func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// expectText checks status and exact body of a response.
func expectText(t *testing.T, what string, r resp, status int, body string) {
	t.Helper()
	if r.status != status || string(r.body) != body {
		t.Errorf("%s: got %d %q, want %d %q", what, r.status, r.body, status, body)
	}
}

// TestPush checks every push outcome (auth, MFA, scope, ownership, repush, multipart).
func TestPush(t *testing.T) {
	up, u := newWriteServer(t)
	push := func(gem []byte, hdr ...string) resp {
		return do(t, "POST", u+"/api/v1/gems", gem, append([]string{"Content-Type", "application/octet-stream"}, hdr...)...)
	}
	expectText(t, "seed", push(buildGem(t, GemSpec{Name: "owned", Version: "1.0.0"}), "Authorization", "key-alice"), 200, "Successfully registered gem: owned (1.0.0)")

	tests := []struct {
		name   string
		spec   GemSpec
		hdr    []string
		status int
		body   string
	}{
		{"no key", GemSpec{Name: "n1", Version: "1"}, nil, 401, TextPleaseSignUp},
		{"unknown key", GemSpec{Name: "n1", Version: "1"}, []string{"Authorization", "nope"}, 401, TextPleaseSignUp},
		{"mfa without otp", GemSpec{Name: "m1", Version: "1"}, []string{"Authorization", "key-mfa"}, 401, TextOTPMissing},
		{"mfa wrong otp", GemSpec{Name: "m1", Version: "1"}, []string{"Authorization", "key-mfa", "OTP", "000000"}, 401, TextOTPIncorrect},
		{"mfa right otp", GemSpec{Name: "m1", Version: "1"}, []string{"Authorization", "key-mfa", "OTP", "123456"}, 200, "Successfully registered gem: m1 (1)"},
		{"missing scope", GemSpec{Name: "n2", Version: "1"}, []string{"Authorization", "key-alice-ro"}, 403, TextInsufficientScope},
		{"gem-scoped key, other gem", GemSpec{Name: "n3", Version: "1"}, []string{"Authorization", "key-alice-gem"}, 403, TextInsufficientScope},
		{"gem-scoped key, its gem", GemSpec{Name: "other", Version: "1"}, []string{"Authorization", "key-alice-gem"}, 200, "Successfully registered gem: other (1)"},
		{"new version", GemSpec{Name: "owned", Version: "1.1.0"}, []string{"Authorization", "key-alice"}, 200, "Successfully registered gem: owned (1.1.0)"},
		{"platform", GemSpec{Name: "owned", Version: "1.1.0", Platform: "x86_64-linux"}, []string{"Authorization", "key-alice"}, 200, "Successfully registered gem: owned (1.1.0-x86_64-linux)"},
		{"repush", GemSpec{Name: "owned", Version: "1.0.0"}, []string{"Authorization", "key-alice"}, 403, TextRepush},
		{"not an owner", GemSpec{Name: "owned", Version: "2.0.0"}, []string{"Authorization", "key-bob"}, 403, "You do not have permission to push to this gem. Ask an owner to add you with: gem owner owned --add bob@example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := push(buildGem(t, tc.spec), tc.hdr...)
			expectText(t, tc.name, r, tc.status, tc.body)
			if r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type = %q", r.header.Get("Content-Type"))
			}
			_, published := up.Body("/info/" + tc.spec.Name)
			if tc.status == 200 {
				info, _ := up.Body("/info/" + tc.spec.Name)
				if !strings.Contains(string(info), compactNumber(tc.spec)+" |checksum:"+gemSHA256Hex(buildGem(t, tc.spec))) {
					t.Errorf("pushed gem missing from /info: %s", info)
				}
			} else if published && tc.spec.Name != "owned" {
				t.Errorf("%s was published despite %d", tc.spec.Name, tc.status)
			}
		})
	}

	r := push([]byte("not a gem"), "Authorization", "key-alice")
	if r.status != 422 || !strings.HasPrefix(string(r.body), TextCannotProcess) {
		t.Errorf("garbage push: %d %q", r.status, r.body)
	}

	// Multipart push (gem push --attestation).
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("gem", "mp-1.0.gem")
	fw.Write(buildGem(t, GemSpec{Name: "mp", Version: "1.0"}))
	mw.WriteField("attestations", "[]")
	mw.Close()
	r = do(t, "POST", u+"/api/v1/gems", body.Bytes(), "Content-Type", mw.FormDataContentType(), "Authorization", "key-alice")
	expectText(t, "multipart", r, 200, "Successfully registered gem: mp (1.0)")
	if g := do(t, "GET", u+"/gems/mp-1.0.gem", nil); g.status != 200 {
		t.Errorf("multipart-pushed gem not served: %d", g.status)
	}
	if r.header.Get("Cache-Control") != "private, no-store" || r.header.Get("Vary") != "Cookie, Authorization" {
		t.Errorf("authenticated response headers: %v", r.header)
	}
	// Owners are recorded.
	if o := do(t, "GET", u+"/api/v1/gems/m1/owners.json", nil); !strings.Contains(string(o.body), `"email":"mfa@example.com"`) {
		t.Errorf("owner of a pushed gem: %s", o.body)
	}
}

// TestYank checks every yank outcome and the resulting index changes.
func TestYank(t *testing.T) {
	up, u := newWriteServer(t)
	for _, spec := range []GemSpec{{Name: "y", Version: "1.0.0"}, {Name: "y", Version: "2.0.0"}, {Name: "y", Version: "2.0.0", Platform: "java"}} {
		expectText(t, "seed", do(t, "POST", u+"/api/v1/gems", buildGem(t, spec), "Authorization", "key-alice"), 200, "Successfully registered gem: y ("+compactNumber(spec)+")")
	}
	expectText(t, "seed mfa", do(t, "POST", u+"/api/v1/gems", buildGem(t, GemSpec{Name: "ym", Version: "1"}), "Authorization", "key-mfa", "OTP", "123456"), 200, "Successfully registered gem: ym (1)")
	yank := func(form url.Values, hdr ...string) resp {
		return do(t, "DELETE", u+"/api/v1/gems/yank", []byte(form.Encode()), append([]string{"Content-Type", "application/x-www-form-urlencoded"}, hdr...)...)
	}
	f := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	tests := []struct {
		name   string
		form   url.Values
		hdr    []string
		status int
		body   string
	}{
		{"no key", f("gem_name", "y", "version", "1.0.0"), nil, 401, TextPleaseSignUp},
		{"unknown gem", f("gem_name", "zz", "version", "1"), []string{"Authorization", "key-alice"}, 404, TextV2GemNotFound},
		{"not owner", f("gem_name", "y", "version", "1.0.0"), []string{"Authorization", "key-bob"}, 403, TextNoYankPermission},
		{"unknown version", f("gem_name", "y", "version", "9.9"), []string{"Authorization", "key-alice"}, 404, "The version 9.9 does not exist."},
		{"unknown platform", f("gem_name", "y", "version", "1.0.0", "platform", "java"), []string{"Authorization", "key-alice"}, 404, "The version 1.0.0 (java) does not exist."},
		{"missing scope", f("gem_name", "y", "version", "1.0.0"), []string{"Authorization", "key-alice-ro"}, 403, TextInsufficientScope},
		{"gem-scoped key", f("gem_name", "y", "version", "1.0.0"), []string{"Authorization", "key-alice-gem"}, 403, TextInsufficientScope},
		{"mfa without otp", f("gem_name", "ym", "version", "1"), []string{"Authorization", "key-mfa"}, 401, TextOTPMissing},
		{"mfa wrong otp", f("gem_name", "ym", "version", "1"), []string{"Authorization", "key-mfa", "OTP", "1"}, 401, TextOTPIncorrect},
		{"mfa ok", f("gem_name", "ym", "version", "1"), []string{"Authorization", "key-mfa", "OTP", "123456"}, 200, "Successfully deleted gem: ym (1)"},
		{"ok", f("gem_name", "y", "version", "1.0.0"), []string{"Authorization", "key-alice"}, 200, "Successfully deleted gem: y (1.0.0)"},
		{"platform ok", f("gem_name", "y", "version", "2.0.0", "platform", "java"), []string{"Authorization", "key-alice"}, 200, "Successfully deleted gem: y (2.0.0-java)"},
		{"already yanked", f("gem_name", "y", "version", "1.0.0"), []string{"Authorization", "key-alice"}, 404, "The version 1.0.0 does not exist."},
		{"gem fully yanked", f("gem_name", "ym", "version", "1"), []string{"Authorization", "key-mfa", "OTP", "123456"}, 404, TextRubygemNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expectText(t, tc.name, yank(tc.form, tc.hdr...), tc.status, tc.body)
		})
	}
	v, _ := up.Body("/versions")
	if !strings.Contains(string(v), "\ny -1.0.0 ") || !strings.Contains(string(v), "\ny -2.0.0-java ") || !strings.Contains(string(v), "\nym -1 ") {
		t.Errorf("/versions after yanks:\n%s", v)
	}
	if g := do(t, "GET", u+"/gems/y-1.0.0.gem", nil); g.status != 403 {
		t.Errorf("yanked gem served: %d", g.status)
	}
}

// TestOwners checks the owners write endpoints.
func TestOwners(t *testing.T) {
	_, u := newWriteServer(t)
	expectText(t, "seed", do(t, "POST", u+"/api/v1/gems", buildGem(t, GemSpec{Name: "o", Version: "1"}), "Authorization", "key-alice"), 200, "Successfully registered gem: o (1)")
	owners := func(method, email string, hdr ...string) resp {
		return do(t, method, u+"/api/v1/gems/o/owners", []byte(url.Values{"email": {email}}.Encode()), append([]string{"Content-Type", "application/x-www-form-urlencoded"}, hdr...)...)
	}
	added := "bob was added as an unconfirmed owner. Ownership access will be enabled after the user clicks on the confirmation mail sent to their email."
	steps := []struct {
		name, method, email string
		hdr                 []string
		status              int
		body                string
	}{
		{"no key", "POST", "bob@example.com", nil, 401, TextPleaseSignUp},
		{"missing scope", "POST", "bob@example.com", []string{"Authorization", "key-alice-ro"}, 403, TextInsufficientScope},
		{"not owner", "POST", "bob@example.com", []string{"Authorization", "key-mfa", "OTP", "123456"}, 403, TextNotOwner},
		{"mfa before anything", "POST", "bob@example.com", []string{"Authorization", "key-mfa"}, 401, TextOTPMissing},
		{"unknown user", "POST", "nobody@example.com", []string{"Authorization", "key-alice"}, 404, TextOwnerNotFound},
		{"add", "POST", "bob@example.com", []string{"Authorization", "key-alice"}, 200, added},
		{"add twice", "POST", "bob@example.com", []string{"Authorization", "key-alice"}, 422, "User has already been taken"},
		{"update", "PATCH", "bob@example.com", []string{"Authorization", "key-alice"}, 200, TextOwnerUpdated},
		{"update non-owner", "PUT", "mfa@example.com", []string{"Authorization", "key-alice"}, 404, TextOwnerNotFound},
		{"remove", "DELETE", "bob@example.com", []string{"Authorization", "key-alice"}, 200, TextOwnerRemoved},
		{"remove non-owner", "DELETE", "bob@example.com", []string{"Authorization", "key-alice"}, 404, TextOwnerNotFound},
		{"remove last", "DELETE", "alice@example.com", []string{"Authorization", "key-alice"}, 403, TextUnableToRemoveOwner},
	}
	for _, s := range steps {
		expectText(t, s.name, owners(s.method, s.email, s.hdr...), s.status, s.body)
	}
	if r := do(t, "POST", u+"/api/v1/gems/zz/owners", []byte("email=bob@example.com"), "Authorization", "key-alice"); r.status != 404 || string(r.body) != TextRubygemNotFound {
		t.Errorf("owners of unknown gem: %d %q", r.status, r.body)
	}
	r := do(t, "GET", u+"/api/v1/gems/o/owners.yaml", nil, "Authorization", "key-alice")
	if r.status != 200 || !strings.Contains(string(r.body), "email: alice@example.com") || r.header.Get("Cache-Control") != "private, no-store" {
		t.Errorf("owners.yaml: %d %s %v", r.status, r.body, r.header)
	}
}

// TestPrivateEndpoints checks per-principal private responses and their headers.
func TestPrivateEndpoints(t *testing.T) {
	_, u := newWriteServer(t)
	do(t, "POST", u+"/api/v1/gems", buildGem(t, GemSpec{Name: "mine", Version: "1"}), "Authorization", "key-alice")
	bodies := map[string]string{}
	for _, key := range []string{"key-alice", "key-bob"} {
		for _, p := range []string{"/api/v1/web_hooks.json", "/api/v1/gems.json", "/api/v1/profile/me.json"} {
			r := do(t, "GET", u+p, nil, "Authorization", key)
			if r.status != 200 || r.header.Get("Cache-Control") != "private, no-store" || r.header.Get("Vary") != "Cookie, Authorization" ||
				r.header.Get(PrincipalHeader) != writeKeys[key].Owner {
				t.Errorf("%s %s: %d %v", key, p, r.status, r.header)
			}
			if prev, ok := bodies[p]; ok && prev == string(r.body) {
				t.Errorf("%s: identical bodies for different keys: %s", p, r.body)
			}
			bodies[p] = string(r.body)
		}
	}
	if r := do(t, "GET", u+"/api/v1/gems.json", nil, "Authorization", "key-alice"); !strings.Contains(string(r.body), `"name":"mine"`) {
		t.Errorf("own gems: %s", r.body)
	}
	if r := do(t, "GET", u+"/api/v1/web_hooks.json", nil, "Authorization", "key-alice-ro"); r.status != 403 {
		t.Errorf("web hooks without scope: %d", r.status)
	}
	if r := do(t, "GET", u+"/api/v1/web_hooks.json", nil); r.status != 401 || string(r.body) != TextPleaseSignUp {
		t.Errorf("web hooks without key: %d %q", r.status, r.body)
	}
	a := do(t, "GET", u+"/api/v1/profile/me.json", nil, "Authorization", basic("alice@example.com", "pw"))
	b := do(t, "GET", u+"/api/v1/profile/me.json", nil, "Authorization", basic("bob@example.com", "pw2"))
	if a.status != 200 || b.status != 200 || bytes.Equal(a.body, b.body) || a.header.Get("Cache-Control") != "private, no-store" {
		t.Errorf("profile/me basic: %d %s / %d %s", a.status, a.body, b.status, b.body)
	}
	if r := do(t, "GET", u+"/api/v1/profile/me.json", nil, "Authorization", basic("alice@example.com", "bad")); r.status != 401 || string(r.body) != `{"error":"Invalid credentials","code":401}` {
		t.Errorf("profile/me bad password: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", u+"/api/v1/profile/me.json", nil); r.status != 401 || r.header.Get("WWW-Authenticate") != `Basic realm="Application"` || string(r.body) != TextBasicDenied {
		t.Errorf("profile/me anonymous: %d %v %q", r.status, r.header, r.body)
	}
}

// TestAPIKeyEndpoint checks API key creation, scope updates and the retired GET.
func TestAPIKeyEndpoint(t *testing.T) {
	_, u := newWriteServer(t)
	expectText(t, "GET", do(t, "GET", u+"/api/v1/api_key", nil, "Authorization", basic("alice@example.com", "pw")), http.StatusGone, TextAPIKeyRetired)
	form := []byte("name=ci&push_rubygem=true&index_rubygems=true")
	if r := do(t, "POST", u+"/api/v1/api_key", form, "Content-Type", "application/x-www-form-urlencoded", "Authorization", basic("alice@example.com", "nope")); r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("bad basic: %d %v", r.status, r.header)
	}
	r := do(t, "POST", u+"/api/v1/api_key", form, "Content-Type", "application/x-www-form-urlencoded", "Authorization", basic("alice@example.com", "pw"))
	key := string(r.body)
	if r.status != 200 || !strings.HasPrefix(key, "rubygems_") || len(key) != len("rubygems_")+48 {
		t.Fatalf("create key: %d %q", r.status, key)
	}
	expectText(t, "push with new key", do(t, "POST", u+"/api/v1/gems", buildGem(t, GemSpec{Name: "k", Version: "1"}), "Authorization", key), 200, "Successfully registered gem: k (1)")
	expectText(t, "yank without scope", do(t, "DELETE", u+"/api/v1/gems/yank", []byte("gem_name=k&version=1"), "Authorization", key), 403, TextInsufficientScope)
	expectText(t, "update scopes", do(t, "PUT", u+"/api/v1/api_key", []byte("api_key="+key+"&yank_rubygem=true"), "Content-Type", "application/x-www-form-urlencoded", "Authorization", basic("alice@example.com", "pw")), 200, "Scopes for the API key ci updated")
	expectText(t, "yank with new scope", do(t, "DELETE", u+"/api/v1/gems/yank", []byte("gem_name=k&version=1"), "Authorization", key), 200, "Successfully deleted gem: k (1)")
	j := do(t, "POST", u+"/api/v1/api_key.json", form, "Content-Type", "application/x-www-form-urlencoded", "Authorization", basic("bob@example.com", "pw2"))
	if j.status != 200 || !strings.HasPrefix(string(j.body), `{"rubygems_api_key":"rubygems_`) {
		t.Errorf("create key json: %d %s", j.status, j.body)
	}
	if r := do(t, "PUT", u+"/api/v1/gems/unyank", nil, "Authorization", key); r.status != 403 || string(r.body) != TextDeprecated {
		t.Errorf("unyank: %d %q", r.status, r.body)
	}
}

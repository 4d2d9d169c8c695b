package testupstream

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"github.com/gemproxy/gemproxy/internal/rubyfmt"
)

// PrincipalHeader is set on every authenticated (private) API response to
// the user the upstream identified, so tests can tell whose response a
// client received.
const PrincipalHeader = "X-Testupstream-Principal"

// apiKey is a configured or created API key.
type apiKey struct {
	info KeyInfo // owner, MFA, scopes
	name string  // key name given at creation
	raw  string  // the raw key (set on copies returned by authKey)
}

// allScopes lists every API key scope (RGO app/models/api_key.rb).
var allScopes = []string{"index_rubygems", "push_rubygem", "yank_rubygem", "add_owner", "update_owner", "remove_owner", "access_webhooks", "show_dashboard", "configure_trusted_publishers"}

// form merges the URL query and a form-urlencoded body (for every method,
// DELETE included) as Rails' params does: a key in the query replaces the
// same key in the body (request_parameters.merge(query_parameters),
// ActionDispatch::Http::Parameters#parameters), and of a key repeated
// without "[]" only the last value counts (Rack's query parser).
func (q *reqState) form() url.Values {
	v := url.Values{}
	ct, _, _ := mime.ParseMediaType(q.r.Header.Get("Content-Type"))
	if ct == "" || ct == "application/x-www-form-urlencoded" {
		if b, err := url.ParseQuery(string(q.body)); err == nil {
			maps.Copy(v, b)
		}
	}
	maps.Copy(v, q.r.URL.Query())
	for k, vs := range v {
		if !strings.HasSuffix(k, "[]") {
			v[k] = vs[len(vs)-1:]
		}
	}
	return v
}

// serveWrite handles authenticated endpoints; it reports whether it did.
func (s *Server) serveWrite(q *reqState) bool {
	p, m := q.r.URL.Path, q.r.Method
	seg := strings.Split(strings.TrimPrefix(p, "/api/"), "/")
	switch {
	case m == http.MethodPost && (p == "/api/v1/gems" || p == "/api/v1/gems.json" || p == "/api/v1/gems.yaml"):
		s.push(q)
	case (m == http.MethodGet || m == http.MethodHead) && (p == "/api/v1/gems.json" || p == "/api/v1/gems.yaml"):
		s.ownGems(q, strings.TrimPrefix(p, "/api/v1/gems."))
	case m == http.MethodDelete && (p == "/api/v1/gems/yank" || p == "/api/v1/gems/yank.json"):
		s.yank(q)
	case m == http.MethodPut && strings.HasPrefix(p, "/api/v1/gems/unyank"):
		q.text(http.StatusForbidden, TextDeprecated)
	case len(seg) == 4 && seg[0] == "v1" && seg[1] == "gems" && (seg[3] == "owners" || seg[3] == "owners.json" || seg[3] == "owners.yaml") &&
		(m == http.MethodPost || m == http.MethodDelete || m == http.MethodPatch || m == http.MethodPut):
		s.ownersWrite(q, seg[2])
	case (m == http.MethodGet || m == http.MethodHead) && (p == "/api/v1/web_hooks.json" || p == "/api/v1/web_hooks.yaml"):
		s.webHooks(q, strings.TrimPrefix(p, "/api/v1/web_hooks."))
	case (m == http.MethodGet || m == http.MethodHead) && (p == "/api/v1/profile/me" || p == "/api/v1/profile/me.json" || p == "/api/v1/profile/me.yaml"):
		_, ext := splitExt(strings.TrimPrefix(p, "/api/v1/profile/"))
		s.profileMe(q, ext)
	case p == "/api/v1/api_key" || p == "/api/v1/api_key.json" || p == "/api/v1/api_key.yaml":
		_, ext := splitExt(strings.TrimPrefix(p, "/api/v1/"))
		s.apiKeyEndpoint(q, ext)
	default:
		return false
	}
	return true
}

// authKey checks the Authorization header; on failure it answers 401.
func (s *Server) authKey(q *reqState) (*apiKey, bool) {
	raw := q.r.Header.Get("Authorization")
	s.mu.RLock()
	k := s.keys[raw]
	s.mu.RUnlock()
	if raw == "" || k == nil {
		q.text(http.StatusUnauthorized, TextPleaseSignUp)
		return nil, false
	}
	c := *k
	c.raw = raw
	q.w.Header().Set(PrincipalHeader, c.info.Owner)
	return &c, true
}

// checkOTP enforces MFA; on failure it answers 401 with the exact text.
func (s *Server) checkOTP(q *reqState, mfa bool) bool {
	if !mfa {
		return true
	}
	otp := q.r.Header.Get("OTP")
	switch {
	case otp == "":
		q.text(http.StatusUnauthorized, TextOTPMissing)
		return false
	case s.opts.OTP == "" || otp != s.opts.OTP:
		q.text(http.StatusUnauthorized, TextOTPIncorrect)
		return false
	}
	return true
}

// scopeOK checks a scope (and the key's gem restriction); on failure it
// answers 403.
func scopeOK(q *reqState, k *apiKey, scope, gem string) bool {
	if !k.info.has(scope) || (k.info.Gem != "" && gem != "" && k.info.Gem != gem) {
		q.text(http.StatusForbidden, TextInsufficientScope)
		return false
	}
	return true
}

// gemFromBody extracts the .gem bytes of a push: the raw body, or the "gem"
// part of a multipart/form-data body.
func gemFromBody(q *reqState) ([]byte, error) {
	ct, params, _ := mime.ParseMediaType(q.r.Header.Get("Content-Type"))
	if ct != "multipart/form-data" {
		return q.body, nil
	}
	mr := multipart.NewReader(bytes.NewReader(q.body), params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil, errors.New("multipart body has no gem part")
		}
		if err != nil {
			return nil, err
		}
		if part.FormName() == "gem" {
			return io.ReadAll(part)
		}
	}
}

// ownedBy reports whether user owns g. s.mu must be held.
func ownedBy(g *gemEntry, user string) bool {
	for _, o := range g.owners {
		if o == user {
			return true
		}
	}
	return false
}

// push handles POST /api/v1/gems.
func (s *Server) push(q *reqState) {
	k, ok := s.authKey(q)
	if !ok || !s.checkOTP(q, k.info.MFA) || !scopeOK(q, k, "push_rubygem", "") {
		return
	}
	gem, err := gemFromBody(q)
	if err != nil {
		q.text(http.StatusUnprocessableEntity, TextCannotProcess+err.Error()+"\n")
		return
	}
	spec, err := rubyfmt.ParseGem(gem)
	if err == nil {
		err = spec.Validate()
	}
	if err != nil {
		q.text(http.StatusUnprocessableEntity, TextCannotProcess+err.Error()+"\n")
		return
	}
	if !scopeOK(q, k, "push_rubygem", spec.Name) {
		return
	}
	s.mu.RLock()
	g := s.st.gems[spec.Name]
	notOwner := g != nil && !ownedBy(g, k.info.Owner)
	_, dup := s.st.byFull[spec.FullName()]
	s.mu.RUnlock()
	switch {
	case notOwner:
		q.text(http.StatusForbidden, "You do not have permission to push to this gem. Ask an owner to add you with: gem owner "+spec.Name+" --add "+k.info.Owner)
		return
	case dup:
		q.text(http.StatusForbidden, TextRepush)
		return
	}
	if err := s.publish([]Item{{Spec: spec, Gem: gem}}, k.info.Owner); err != nil && !errors.Is(err, errMarshal) {
		if strings.Contains(err.Error(), "already published") {
			q.text(http.StatusForbidden, TextRepush)
			return
		}
		q.text(http.StatusUnprocessableEntity, TextCannotProcess+err.Error()+"\n")
		return
	}
	q.text(http.StatusOK, "Successfully registered gem: "+spec.Name+" ("+compactNumber(spec)+")")
}

// yank handles DELETE /api/v1/gems/yank (form gem_name, version, platform).
func (s *Server) yank(q *reqState) {
	k, ok := s.authKey(q)
	if !ok {
		return
	}
	f := q.form()
	name := f.Get("gem_name")
	if name == "" {
		name = f.Get("rubygem_name")
	}
	ver, plat := f.Get("version"), f.Get("platform")
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.st.gems[name]
	if g == nil {
		q.text(http.StatusNotFound, TextV2GemNotFound)
		return
	}
	if k.info.Gem != "" && k.info.Gem != name {
		q.text(http.StatusForbidden, TextInsufficientScope)
		return
	}
	hosted := false
	for _, v := range g.versions {
		hosted = hosted || v.indexed()
	}
	if !hosted {
		q.text(http.StatusNotFound, TextRubygemNotFound)
		return
	}
	if !ownedBy(g, k.info.Owner) {
		q.text(http.StatusForbidden, TextNoYankPermission)
		return
	}
	spec := GemSpec{Name: name, Version: ver, Platform: plat}
	v := s.st.byFull[spec.FullName()]
	if ver == "" || v == nil || v.yanked {
		msg := "The version " + ver
		if plat != "" {
			msg += " (" + plat + ")"
		}
		q.text(http.StatusNotFound, msg+" does not exist.")
		return
	}
	if !s.checkOTP(q, k.info.MFA) || !scopeOK(q, k, "yank_rubygem", name) {
		return
	}
	s.yankLocked(name, ver, plat)
	q.text(http.StatusOK, "Successfully deleted gem: "+name+" ("+v.number+")")
}

// knownUserLocked reports whether user exists. s.mu must be held.
func (s *Server) knownUserLocked(user string) bool {
	if user == "" {
		return false
	}
	if user == s.owner() {
		return true
	}
	if _, ok := s.opts.BasicUsers[user]; ok {
		return true
	}
	for _, k := range s.keys {
		if k.info.Owner == user {
			return true
		}
	}
	for _, g := range s.st.gems {
		if ownedBy(g, user) {
			return true
		}
	}
	return false
}

// ownersWrite handles POST/DELETE/PATCH/PUT /api/v1/gems/NAME/owners.
func (s *Server) ownersWrite(q *reqState, name string) {
	k, ok := s.authKey(q)
	if !ok || !s.checkOTP(q, k.info.MFA) {
		return
	}
	scope := map[string]string{http.MethodPost: "add_owner", http.MethodDelete: "remove_owner", http.MethodPatch: "update_owner", http.MethodPut: "update_owner"}[q.r.Method]
	f := q.form()
	email := f.Get("email")
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.st.gems[name]
	if g == nil {
		q.text(http.StatusNotFound, TextRubygemNotFound)
		return
	}
	if !scopeOK(q, k, scope, name) {
		return
	}
	if !ownedBy(g, k.info.Owner) {
		q.text(http.StatusForbidden, TextNotOwner)
		return
	}
	if email == "" {
		q.text(http.StatusBadRequest, "Request is missing param 'email'")
		return
	}
	if !s.knownUserLocked(email) {
		q.text(http.StatusNotFound, TextOwnerNotFound)
		return
	}
	switch q.r.Method {
	case http.MethodPost:
		if ownedBy(g, email) {
			q.text(http.StatusUnprocessableEntity, "User has already been taken")
			return
		}
		g.owners = append(g.owners, email)
		q.text(http.StatusOK, handleOf(email)+" was added as an unconfirmed owner. Ownership access will be enabled after the user clicks on the confirmation mail sent to their email.")
	case http.MethodDelete:
		if !ownedBy(g, email) {
			q.text(http.StatusNotFound, TextOwnerNotFound)
			return
		}
		if len(g.owners) == 1 {
			q.text(http.StatusForbidden, TextUnableToRemoveOwner)
			return
		}
		kept := g.owners[:0:0]
		for _, o := range g.owners {
			if o != email {
				kept = append(kept, o)
			}
		}
		g.owners = kept
		q.text(http.StatusOK, TextOwnerRemoved)
	default:
		if !ownedBy(g, email) {
			q.text(http.StatusNotFound, TextOwnerNotFound)
			return
		}
		if r := f.Get("role"); r != "" && r != "owner" && r != "maintainer" {
			q.text(http.StatusUnprocessableEntity, "Role is not included in the list")
			return
		}
		q.text(http.StatusOK, TextOwnerUpdated)
	}
}

// ownGems handles GET /api/v1/gems.(json|yaml): the key owner's gems.
func (s *Server) ownGems(q *reqState, ext string) {
	k, ok := s.authKey(q)
	if !ok || !scopeOK(q, k, "index_rubygems", "") {
		return
	}
	s.mu.RLock()
	out := []any{}
	for _, name := range sortedKeys(s.st.gems) {
		g := s.st.gems[name]
		if !ownedBy(g, k.info.Owner) {
			continue
		}
		if snap := s.snapshotGemLocked(name); snap.mostRecent() != nil {
			out = append(out, s.gemPayload(snap, snap.mostRecent()))
		}
	}
	s.mu.RUnlock()
	q.encode(http.StatusOK, ext, out)
}

// keyFingerprint returns the first 12 hex digits of SHA-256(key).
func keyFingerprint(raw string) string {
	s := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(s[:6])
}

// webHooks handles GET /api/v1/web_hooks.(json|yaml): one hook whose URL
// names the key's owner and fingerprint (distinct per key).
func (s *Server) webHooks(q *reqState, ext string) {
	k, ok := s.authKey(q)
	if !ok || !scopeOK(q, k, "access_webhooks", "") {
		return
	}
	hook := omap{{"url", "https://hooks.example.invalid/" + url.PathEscape(k.info.Owner) + "/" + keyFingerprint(k.raw)}, {"failure_count", 0}}
	q.encode(http.StatusOK, ext, omap{{"all gems", []any{hook}}})
}

// basicUser checks HTTP Basic credentials; on failure it answers 401
// (challenge when absent, JSON error when wrong if jsonErr) and returns "".
func (s *Server) basicUser(q *reqState, jsonErr bool) string {
	user, pass, ok := q.r.BasicAuth()
	if ok {
		if want, known := s.opts.BasicUsers[user]; known && want == pass {
			q.w.Header().Set(PrincipalHeader, user)
			return user
		}
	}
	if ok && jsonErr {
		q.encode(http.StatusUnauthorized, "json", omap{{"error", "Invalid credentials"}, {"code", 401}})
		return ""
	}
	q.w.Header().Set("WWW-Authenticate", `Basic realm="Application"`)
	q.text(http.StatusUnauthorized, TextBasicDenied)
	return ""
}

// userMFA reports whether user has MFA (any of their keys says so).
func (s *Server) userMFA(user string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, k := range s.keys {
		if k.info.Owner == user && k.info.MFA {
			return true
		}
	}
	return false
}

// profileMe handles GET /api/v1/profile/me(.json|.yaml) with Basic auth
// (a missing Authorization gets the Basic challenge) or an API key.
func (s *Server) profileMe(q *reqState, ext string) {
	var user string
	if auth := q.r.Header.Get("Authorization"); auth == "" || strings.HasPrefix(auth, "Basic ") {
		if user = s.basicUser(q, true); user == "" {
			return
		}
	} else {
		k, ok := s.authKey(q)
		if !ok {
			return
		}
		user = k.info.Owner
	}
	mfa := "disabled"
	if s.userMFA(user) {
		mfa = "ui_and_api"
	}
	if ext == "" {
		ext = "json"
	}
	q.encode(http.StatusOK, ext, omap{{"id", userID(user)}, {"handle", handleOf(user)}, {"email", user}, {"mfa", mfa}})
}

// apiKeyEndpoint handles /api/v1/api_key(.json|.yaml).
func (s *Server) apiKeyEndpoint(q *reqState, ext string) {
	switch q.r.Method {
	case http.MethodGet, http.MethodHead:
		q.text(http.StatusGone, TextAPIKeyRetired)
		return
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		q.jsonNotFound()
		return
	}
	user := s.basicUser(q, false)
	if user == "" || !s.checkOTP(q, s.userMFA(user)) {
		return
	}
	f := q.form()
	var scopes []string
	for _, sc := range allScopes {
		if f.Get(sc) == "true" {
			scopes = append(scopes, sc)
		}
	}
	for _, sc := range append(f["scopes[]"], f["scopes"]...) {
		scopes = append(scopes, sc)
	}
	if q.r.Method != http.MethodPost {
		raw := f.Get("api_key")
		s.mu.Lock()
		k := s.keys[raw]
		if raw == "" || k == nil || k.info.Owner != user {
			s.mu.Unlock()
			q.text(http.StatusNotFound, "API key not found")
			return
		}
		if len(scopes) > 0 {
			k.info.Scopes = scopes
		}
		name := k.name
		s.mu.Unlock()
		q.text(http.StatusOK, "Scopes for the API key "+name+" updated")
		return
	}
	if len(scopes) == 0 {
		q.text(http.StatusUnprocessableEntity, "Please enable at least one scope")
		return
	}
	s.mu.Lock()
	n := len(s.keys)
	sum := sha256.Sum256([]byte(user + "\x00" + itoa(n) + "\x00" + f.Get("name")))
	raw := "rubygems_" + hex.EncodeToString(sum[:24])
	s.keys[raw] = &apiKey{info: KeyInfo{Owner: user, MFA: s.userMFALocked(user) || f.Get("mfa") == "true", Scopes: scopes, Gem: f.Get("rubygem_name")}, name: f.Get("name")}
	s.mu.Unlock()
	if ext == "json" {
		q.encode(http.StatusOK, "json", omap{{"rubygems_api_key", raw}, {"status", "ok"}})
		return
	}
	q.text(http.StatusOK, raw)
}

// userMFALocked is userMFA with s.mu held.
func (s *Server) userMFALocked(user string) bool {
	for _, k := range s.keys {
		if k.info.Owner == user && k.info.MFA {
			return true
		}
	}
	return false
}

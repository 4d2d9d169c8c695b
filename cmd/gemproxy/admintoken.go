package main

import (
	"errors"
	"fmt"
	"strings"
)

// envAdminToken is the variable holding the admin token (admin_token).
const envAdminToken = "GEMPROXY_ADMIN_TOKEN"

// minAdminTokenLen is the shortest admin token accepted: a secret, not a
// password a person types.
const minAdminTokenLen = 16

// checkAdminToken accepts "" (no admin API) or a token that fits an
// Authorization header and is long enough to be a secret. The error never
// repeats the token.
func checkAdminToken(token string) error {
	if token == "" {
		return nil
	}
	if len(token) < minAdminTokenLen {
		return fmt.Errorf("must be at least %d characters (e.g. the output of openssl rand -hex 32)", minAdminTokenLen)
	}
	if strings.IndexFunc(token, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
		return errors.New("must be printable ASCII without spaces")
	}
	return nil
}

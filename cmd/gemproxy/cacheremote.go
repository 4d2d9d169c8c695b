package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/proxy"
)

// remoteCacheCommand runs gemproxy cache SUB against the admin API of the
// server at serverURL, printing what the command prints on a data
// directory. prefix is purge's PATH-PREFIX, "" for --all.
func remoteCacheCommand(sub, prefix, serverURL, token string, stdout, stderr io.Writer) int {
	c, err := newAdminClient(serverURL, token)
	if err != nil {
		return fail(stderr, err)
	}
	code := exitOK
	switch sub {
	case "stats":
		err = c.stats(stdout)
	case "verify":
		code, err = c.verify(stdout)
	default:
		err = c.purge(prefix, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "gemproxy: cache %s: %v\n", sub, err)
		return exitFailure
	}
	return code
}

// adminClient calls the admin API of one server.
type adminClient struct {
	// base is the server's URL; the API's paths are appended to its path.
	base *url.URL
	// token is sent as "Authorization: Bearer TOKEN".
	token string
	// client has no overall timeout: a verify streams for as long as it
	// runs.
	client *http.Client
}

// newAdminClient checks serverURL and that there is a token to send.
func newAdminClient(serverURL, token string) (*adminClient, error) {
	u, err := parseUpstream(serverURL)
	if err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	if token == "" {
		return nil, fmt.Errorf("--url: the admin token is missing: set %s (or admin_token in the config file)", envAdminToken)
	}
	return &adminClient{base: u, token: token, client: &http.Client{}}, nil
}

// call sends method to the API path with query and returns the response
// if it is a 200; any other status is an error saying what it means.
func (c *adminClient) call(method, path string, query url.Values) (*http.Response, error) {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = query.Encode()
	req, err := http.NewRequest(method, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return nil, fmt.Errorf("%s refused the admin token (401): check %s", u.Host, envAdminToken)
	case http.StatusNotFound:
		return nil, fmt.Errorf("%s has no admin API (404): set admin_token on the server", u.Host)
	}
	return nil, fmt.Errorf("%s answered %s: %s", u.Host, resp.Status, strings.TrimSpace(string(body)))
}

// callJSON calls the API and decodes its JSON answer into v.
func (c *adminClient) callJSON(method, path string, query url.Values, v any) error {
	resp, err := c.call(method, path, query)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s: unreadable answer: %w", path, err)
	}
	return nil
}

// stats prints the server's cache statistics.
func (c *adminClient) stats(w io.Writer) error {
	var st cache.Stats
	if err := c.callJSON(http.MethodGet, proxy.AdminStatsPath, nil, &st); err != nil {
		return err
	}
	printStats(w, st)
	return nil
}

// purge removes the server's entries under prefix ("" for all: every key
// is a path, so "/" matches them all).
func (c *adminClient) purge(prefix string, w io.Writer) error {
	if prefix == "" {
		prefix = "/"
	}
	var res proxy.PurgeResult
	if err := c.callJSON(http.MethodPost, proxy.AdminPurgePath, url.Values{"prefix": {prefix}}, &res); err != nil {
		return err
	}
	printRemoved(w, res.Removed)
	printReusable(w, res.File)
	return nil
}

// maxVerifyLine bounds one line of the verify stream.
const maxVerifyLine = 1 << 20

// verify runs the server's verify, printing each problem as the server
// finds it and the summary, and returns exitFailure if there was any
// problem.
func (c *adminClient) verify(w io.Writer) (int, error) {
	resp, err := c.call(http.MethodPost, proxy.AdminVerifyPath, nil)
	if err != nil {
		return exitFailure, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxVerifyLine)
	for sc.Scan() {
		var l proxy.VerifyLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return exitFailure, fmt.Errorf("unreadable line %q: %w", sc.Text(), err)
		}
		if l.Problem != nil {
			printProblem(w, *l.Problem, cache.FileName)
		}
		if l.Error != "" {
			return exitFailure, fmt.Errorf("stopped after %d of %d entries: %s", l.Checked, l.Total, l.Error)
		}
		if l.Done {
			return finishRemoteVerify(w, l), nil
		}
	}
	return exitFailure, errors.Join(errors.New("the answer ended before the summary"), sc.Err())
}

// finishRemoteVerify prints the summary line l of a verify and returns
// exitFailure if there was any problem.
func finishRemoteVerify(w io.Writer, l proxy.VerifyLine) int {
	printVerifySummary(w, l.RepairProgress)
	if l.Removed > 0 && l.File != nil {
		printReusable(w, *l.File)
	}
	if l.Problems > 0 {
		return exitFailure
	}
	return exitOK
}

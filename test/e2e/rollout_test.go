//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"gopkg.in/yaml.v3"

	"github.com/imgforge/imgforge/pkg/seed"
)

// The images TestCluster rolls its nodes to: v2 marks the web nodes'
// answers (X-Imgforge-Image), the lbs' haproxy.cfg and the db's
// configuration; v3 is v2 with a web
// health check that always fails, so a web node on v3 never gets healthy.
// Both are template edits: their builds make only the overlay image again.
var (
	rolloutV2 = map[string][2]string{
		"lb/templates/haproxy.cfg.tmpl": {"global\n", "# imgforge-test v2\nglobal\n"},
		"web/templates/nginx.conf.tmpl": {"        add_header X-Imgforge-Web $hostname always;\n",
			"        add_header X-Imgforge-Web $hostname always;\n        add_header X-Imgforge-Image v2 always;\n"},
		"db/templates/node.cnf.tmpl": {"[mysqld]\n", "# imgforge-test v2\n[mysqld]\n"},
	}
	rolloutV3 = map[string][2]string{
		"web/templates/nginx.conf.tmpl": {"            return 200 \"ok\\n\";\n", "            return 503 \"v3 fails its health check\\n\";\n"},
	}
)

// buildVersion builds, into a folder imgforge serve reads, the PXE sets of
// the roles that edits change (file: old text, new text, applied to a copy
// of roles/; v3's edits go over v2's), and returns the folder.
func buildVersion(t *testing.T, f *fixture, name string, edits map[string][2]string) string {
	t.Helper()
	roles := filepath.Join(t.TempDir(), "roles")
	copyTree(t, filepath.Join(repo, "roles"), roles)
	all := []map[string][2]string{edits}
	if name == "v3" {
		all = []map[string][2]string{rolloutV2, edits}
	}
	var names []string
	for _, e := range all {
		for file, ed := range e {
			p := filepath.Join(roles, file)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), ed[0]) {
				t.Fatalf("%s: %q not found", file, ed[0])
			}
			if err := os.WriteFile(p, []byte(strings.Replace(string(b), ed[0], ed[1], 1)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for file := range edits {
		names = append(names, strings.Split(file, "/")[0])
	}
	slices.Sort(names)
	out := filepath.Join(t.TempDir(), name)
	mustBuild(t, f.cache, out, append([]string{"--roles", roles, "--format", "pxe"}, slices.Compact(names)...)...)
	return out
}

// serveSets serves root with imgforge serve and relays port of the
// gateway's address inside seg to it; it returns the sets' URL there.
func serveSets(t *testing.T, seg *segment, root, port string) string {
	t.Helper()
	p, _ := serve(t, root)
	l, err := seg.listen("10.10.0.1:" + port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go relayListener(l, fmt.Sprintf("127.0.0.1:%d", p))
	return "http://10.10.0.1:" + port + "/sets/"
}

// relayListener copies the connections accepted on l to addr, until l is
// closed.
func relayListener(l net.Listener, addr string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer u.Close()
			go func() { _, _ = io.Copy(u, c); u.(*net.TCPConn).CloseWrite() }()
			_, _ = io.Copy(c, u)
		}()
	}
}

// rolloutExec is imgforge rollout inside seg's namespace, where the
// agents' control endpoints are.
func rolloutExec(ctx context.Context, t *testing.T, seg *segment, clusterFile, secrets string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", seg.ns, binary, "rollout",
		"--cluster", clusterFile, "--secrets", secrets, "--drain-timeout", "3m", "--timeout", "15m"}, args...)...)
	cmd.Dir = t.TempDir() // no ./roles: the embedded roles
	return cmd
}

// rolloutCmd runs imgforge rollout (rolloutExec) and waits for it.
func rolloutCmd(ctx context.Context, t *testing.T, seg *segment, clusterFile, secrets string, args ...string) result {
	t.Helper()
	cmd := rolloutExec(ctx, t, seg, clusterFile, secrets, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("imgforge rollout: %v", err)
	}
	t.Logf("imgforge rollout %s: exit %d after %s\n%s%s", strings.Join(args, " "), r.code, time.Since(start).Round(time.Second), r.stdout, r.stderr)
	return r
}

// rolloutKilled runs imgforge rollout like rolloutCmd and kills it
// (SIGKILL) as soon as its log has a line with at; it returns the log so
// far.
func rolloutKilled(ctx context.Context, t *testing.T, seg *segment, clusterFile, secrets, at string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := rolloutExec(ctx, t, seg, clusterFile, secrets, args...)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	var log strings.Builder
	found, read := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), at) {
				cancel() // SIGKILL: ip netns exec runs imgforge in its own process
				close(found)
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	if err := cmd.Start(); err != nil {
		t.Fatalf("imgforge rollout: %v", err)
	}
	err := cmd.Wait()
	pw.Close()
	<-read
	select {
	case <-found:
	default:
		t.Fatalf("imgforge rollout ended (%v) before %q:\n%s", err, at, log.String())
	}
	t.Logf("imgforge rollout %s: killed at %q\n%s", strings.Join(args, " "), at, log.String())
	return log.String()
}

// stream sends one request at a time, at most one every 300 ms, from each
// source in turn, until stopped, and counts them.
type stream struct {
	mu           sync.Mutex
	sent, failed int
	reset        int // failures that were a connection reset or closed before the answer
	gap          time.Duration
	errs         []string // one per burst of failures
	inBurst      bool
	first        string
	burst        int
	cancel       context.CancelFunc
	done         chan struct{}
}

func startStream(ctx context.Context, srcs []string, req func(src string) error) *stream {
	ctx, cancel := context.WithCancel(ctx)
	s := &stream{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		last := time.Now()
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			err := req(srcs[i%len(srcs)])
			if ctx.Err() != nil {
				return
			}
			s.mu.Lock()
			s.sent++
			if err != nil {
				s.failed++
				if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					s.reset++
				}
				// One line per burst of failures in a row: its first
				// error, when it ended and how many it had.
				now := time.Now().Format("15:04:05")
				if s.inBurst && len(s.errs) > 0 {
					s.burst++
					s.errs[len(s.errs)-1] = fmt.Sprintf("%s (%d in a row, the last at %s)", s.first, s.burst, now)
				} else if len(s.errs) < 30 {
					s.first = fmt.Sprintf("%s from %s: %v", now, srcs[i%len(srcs)], err)
					s.burst = 1
					s.errs = append(s.errs, s.first)
				}
				s.inBurst = true
			} else {
				s.inBurst = false
				if d := time.Since(last); d > s.gap {
					s.gap = d
				}
				last = time.Now()
			}
			s.mu.Unlock()
		}
	}()
	return s
}

type streamCounts struct {
	sent, failed, reset int
	gap                 time.Duration
	errs                []string
}

func (c streamCounts) String() string {
	return fmt.Sprintf("%d sent, %d failed (%d reset), longest gap between answers %s", c.sent, c.failed, c.reset, c.gap.Round(time.Millisecond))
}

func (s *stream) counts() streamCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return streamCounts{s.sent, s.failed, s.reset, s.gap, slices.Clone(s.errs)}
}

// since is what the stream counted after an earlier count c (the longest
// gap is the whole stream's).
func (s *stream) since(c streamCounts) streamCounts {
	n := s.counts()
	n.sent -= c.sent
	n.failed -= c.failed
	n.reset -= c.reset
	n.errs = n.errs[min(len(c.errs), len(n.errs)):]
	return n
}

func (s *stream) stop() streamCounts {
	s.cancel()
	<-s.done
	return s.counts()
}

// header asks url from inside seg's namespace and returns the answer's
// header name.
func header(seg *segment, url, name string) (string, error) {
	resp, err := seg.client("", true, false).Get(url)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp.Header.Get(name), nil
}

// rolloutSteps is TestCluster's step 3, run with IMGFORGE_E2E_ROLLOUT=1
// (about 32 minutes on the 2-core machine, which the README's test command
// has no room for: see docs/performance.md):
// imgforge rollout moves both lbs and both web nodes to v2 (sets served
// from v2) while a steady stream of requests from several sources goes to
// the VIP, none of which may fail; then the web nodes to v3 (from v3),
// whose health check fails: the first web node tried comes back on v2 by
// itself, and the rollout stops and names it; a rerun does not offer v3
// again.
func rolloutSteps(ctx context.Context, t *testing.T, seg *segment, clusterYAML, secrets, v2, v3 string,
	get func(src, url string) (string, string, error), fresh func() []string) {
	t.Helper()
	vip := "http://10.10.0.100/"
	v2URL, v3URL := serveSets(t, seg, v2, "8080"), serveSets(t, seg, v3, "8081")
	st := startStream(ctx, fresh(), func(src string) error {
		body, _, err := get(src, vip)
		if err == nil && !strings.Contains(body, "hello from the imgforge database") {
			err = fmt.Errorf("the VIP answered %q", body)
		}
		return err
	})
	webImage := func(addr string) string {
		t.Helper()
		h, err := header(seg, "http://"+addr+"/health", "X-Imgforge-Image")
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		return h
	}
	t3 := time.Now()
	// The rollout is killed once web-1 is out of service, and run again:
	// it takes web-1 through its update first, and web-2 only after.
	v2Args := []string{"--image", "lb=" + v2URL + "lb/", "--image", "web=" + v2URL + "web/"}
	rolloutKilled(ctx, t, seg, clusterYAML, secrets, "web-1: draining", v2Args...)
	r := rolloutCmd(ctx, t, seg, clusterYAML, secrets, v2Args...)
	if r.code != 0 {
		t.Fatalf("rollout to v2, run again after it was killed: exit %d", r.code)
	}
	for _, n := range []string{"web-1", "web-2"} {
		if !strings.Contains(r.stdout, "updated "+n+"\n") {
			t.Errorf("the rerun of the rollout to v2 did not update %s", n)
		}
	}
	for _, n := range []string{"lb-1", "lb-2"} {
		if strings.Contains(r.stderr, n+": draining") {
			t.Errorf("the rerun of the rollout drained %s, which the killed run had updated", n)
		}
	}
	back, drain2 := strings.Index(r.stderr, "web-1: back on"), strings.Index(r.stderr, "web-2: draining")
	if !strings.Contains(r.stderr, "(1 resumed)") || back < 0 || drain2 < back {
		t.Errorf("the rerun did not resume web-1 (left drained by the killed run) before it drained web-2")
	}
	for _, a := range []string{"10.10.0.21", "10.10.0.22"} {
		if h := webImage(a); h != "v2" {
			t.Errorf("web node %s answers with X-Imgforge-Image %q after the rollout, want v2", a, h)
		}
	}
	c2 := st.counts()
	t.Logf("step 3: lb-1, lb-2, web-1 and web-2 rolled to v2 in %s; requests to the VIP meanwhile: %s", time.Since(t3).Round(time.Second), c2)
	if c2.failed > 0 {
		t.Errorf("%d of %d requests failed during the rollout to v2: %v", c2.failed, c2.sent, c2.errs)
	}

	t4 := time.Now()
	r = rolloutCmd(ctx, t, seg, clusterYAML, secrets, "--image", "web="+v3URL+"web/", "--tries", "1", "--trial", "60s")
	if r.code == 0 || !strings.Contains(r.stderr, "node web-1: came back on version") || !strings.Contains(r.stderr, "rolled back") {
		t.Errorf("rollout to v3: exit %d, want a failure naming web-1 as rolled back", r.code)
	}
	if strings.Contains(r.stderr, "web-2: draining") {
		t.Errorf("the rollout to v3 went on to web-2 after web-1 failed")
	}
	// Back on v2, web-1 serves once its agent has rendered nginx.conf
	// again: v2's, with the header.
	hctx, hcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer hcancel()
	if err := eventually(hctx, func() error {
		h, err := header(seg, "http://10.10.0.21/health", "X-Imgforge-Image")
		if err == nil && h != "v2" {
			err = fmt.Errorf("X-Imgforge-Image %q", h)
		}
		return err
	}); err != nil {
		t.Errorf("web-1 after v3 failed: %v, want X-Imgforge-Image v2 (its fallback)", err)
	}
	c3 := st.since(c2)
	t.Logf("step 3: v3 failed on web-1, which came back on v2 by itself, after %s; the rollout said %q; requests meanwhile: %s",
		time.Since(t4).Round(time.Second), lastLine(r.stderr), c3)
	if c3.failed > 0 {
		t.Errorf("%d requests failed while v3 was tried: %v", c3.failed, c3.errs)
	}
	// A rerun does not offer the image that rolled back again.
	r = rolloutCmd(ctx, t, seg, clusterYAML, secrets, "--image", "web="+v3URL+"web/", "--tries", "1", "--trial", "60s")
	if r.code == 0 || !strings.Contains(r.stderr, "not offered again unless --force") || strings.Contains(r.stderr, ": draining") {
		t.Errorf("a rerun of the rollout to v3 without --force: exit %d, want a refusal before any node drains", r.code)
	}
	st.stop()

	// The database, only when named: a row written before its update is
	// read after it (the app loses the database while db-1 reboots). The
	// role's nodes are db-1 and the replica db-2: both are updated.
	db := dbConn(t, seg, secrets)
	mark := fmt.Sprintf("written before the update, %d", time.Now().UnixNano())
	if _, err := db.ExecContext(ctx, "INSERT INTO greeting (message) VALUES (?)", mark); err != nil {
		t.Fatalf("writing a row on db-1: %v", err)
	}
	r = rolloutCmd(ctx, t, seg, clusterYAML, secrets, "--image", "db="+v2URL+"db/")
	if strings.Contains(r.stderr, "db-1: draining") {
		t.Errorf("a rollout of the db without --include db drained db-1")
	}
	t5 := time.Now()
	r = rolloutCmd(ctx, t, seg, clusterYAML, secrets, "--image", "db="+v2URL+"db/", "--include", "db")
	if r.code != 0 || !strings.Contains(r.stdout, "updated db-1\n") {
		t.Fatalf("rollout of the db to v2 with --include db: exit %d", r.code)
	}
	if !strings.Contains(r.stdout, "updated db-2\n") {
		t.Errorf("the rollout of the db to v2 with --include db did not update db-2, the replica")
	}
	var got string
	err := eventually(ctx, func() error {
		return db.QueryRowContext(ctx, "SELECT message FROM greeting WHERE message = ?", mark).Scan(&got)
	})
	if err != nil {
		t.Fatalf("the row written before the db's update: %v", err)
	}
	t.Logf("step 3: db-1 and db-2 rolled to v2 with --include db in %s; the row written before it is there", time.Since(t5).Round(time.Second))
}

// dbConn is a connection pool to db-1's application database from inside
// seg, as the app nodes log in (secrets.yaml's database_password).
func dbConn(t *testing.T, seg *segment, secrets string) *sql.DB {
	t.Helper()
	b, err := os.ReadFile(secrets)
	if err != nil {
		t.Fatal(err)
	}
	var sec struct {
		Password string `yaml:"database_password"`
	}
	if err := yaml.Unmarshal(b, &sec); err != nil || sec.Password == "" {
		t.Fatalf("%s: no database_password (%v)", secrets, err)
	}
	mysql.RegisterDialContext("segment", func(ctx context.Context, addr string) (net.Conn, error) {
		return seg.dial("tcp", "", addr)
	})
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = seed.DefaultDBUser, sec.Password, "segment", "10.10.0.41:3306", "imgforge"
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 10*time.Second, 30*time.Second, 30*time.Second
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	return db
}

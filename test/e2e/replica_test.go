//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The greeting row the db role's schema.sql puts in the application's
// database; the default apps answer with it.
const greeting = "hello from the imgforge database"

// replicaBound bounds the time from a write's commit on db-1 until both
// app nodes have read it on db-2 through the VIP (replicaSteps). MariaDB
// sends the write's binlog event to the replica's connected IO thread at
// commit and its SQL thread applies one row at once: natively well under a
// second. Under emulation, with eight guests on the 2 cores, the replica's
// threads may wait seconds for a core (as the lbs' keepalived does:
// maxFailoverGap), and each look is a request through lb, web and app
// nodes to the replica, which may itself take up to the client's 10 s,
// every 2 s (eventually). 60 s leaves room for a replication delay of 20 s
// and several looks after it; the time taken is logged.
const replicaBound = 60 * time.Second

// replicaAnswer is the default app's answer on /replica: the greeting
// row's text, the app node that answered, and the server it read from
// ("replica" or "primary", and its address: db.json's host, not a name).
var replicaAnswer = regexp.MustCompile(`^(.*) \(served by ([a-z0-9-]+), read from the (replica|primary) (\S+)\)$`)

// replicaSteps is TestCluster's check of db-2, the replica (issue 15,
// part 4), once it has booted. It waits until db-2 replicates (its agent
// pushed imgforge_db_replica_running 1 and a lag) and both app nodes
// (PHP and Python) answer /replica through the VIP from db-2 with the
// row its seed copied from db-1. Then it changes the row's text on db-1,
// as the application's account (the apps read only the first row), and
// both app nodes must answer /replica from db-2 with the new text within
// replicaBound; last, the text goes back, and db-2 must have it again
// within the same bound, so the steps after read the row they expect.
func replicaSteps(ctx context.Context, t *testing.T, booted time.Time, seg *segment, secrets string, byName map[string]seedNode, rec *receiver,
	get func(src, url string) (string, string, error)) {
	t.Helper()
	replica := byName["db-2"].Address
	url := "http://" + clusterVIPs[0] + "/replica"
	// fromReplica asks /replica 4 times and adds each app node that
	// answered from db-2 with text to by.
	fromReplica := func(text string, by map[string]bool) error {
		var last string
		for range 4 {
			body, _, err := get("", url)
			if err != nil {
				return err
			}
			m := replicaAnswer.FindStringSubmatch(strings.TrimSpace(body))
			if m == nil {
				return fmt.Errorf("GET %s: %q is no answer of the /replica route", url, body)
			}
			if m[1] == text && m[3] == "replica" && m[4] == replica {
				by[m[2]] = true
			}
			last = body
		}
		if !by["app-1"] || !by["app-2"] {
			return fmt.Errorf("app nodes that answered %q from the replica %s so far: %v (last answer %q)", text, replica, by, last)
		}
		return nil
	}

	seeded := map[string]bool{}
	err := eventually(ctx, func() error {
		rec.mu.Lock()
		running, ok := rec.replicaRunning[replica]
		_, hasLag := rec.replicaLag[replica]
		rec.mu.Unlock()
		if !ok || running != 1 || !hasLag {
			return fmt.Errorf("db-2 pushed imgforge_db_replica_running %v (pushed: %v), a lag: %v", running, ok, hasLag)
		}
		return fromReplica(greeting, seeded)
	})
	if err != nil {
		t.Fatalf("db-2 never replicated and answered /replica with the seeded row: %v", err)
	}
	rec.mu.Lock()
	lag := rec.replicaLag[replica]
	rec.mu.Unlock()
	t.Logf("step 2: db-2 seeded from db-1 and replicates (imgforge_db_replica_running 1, imgforge_db_replica_lag_seconds %g), both app nodes read the row from it, %.0fs after its boot began",
		lag, time.Since(booted).Seconds())

	// The write, on the primary, as the application's account (schema.sql's
	// greeting table; primary.sql.tmpl grants it SELECT, INSERT, UPDATE,
	// DELETE on the application's database).
	db := dbConn(t, seg, secrets)
	write := func(text string) time.Time {
		t.Helper()
		res, err := db.ExecContext(ctx, "UPDATE greeting SET message = ? ORDER BY id LIMIT 1", text)
		if err != nil {
			t.Fatalf("changing the greeting row on db-1: %v", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			t.Fatalf("changing the greeting row on db-1: %d rows changed (%v), want 1", n, err)
		}
		return time.Now()
	}
	read := func(text, what string) time.Duration {
		t.Helper()
		written := write(text)
		rctx, rcancel := context.WithTimeout(ctx, replicaBound)
		defer rcancel()
		by := map[string]bool{}
		if err := eventually(rctx, func() error { return fromReplica(text, by) }); err != nil {
			t.Fatalf("%s, written on db-1, not read on db-2 within %s: %v", what, replicaBound, err)
		}
		return time.Since(written)
	}
	mark := fmt.Sprintf("written on db-1 at %d", time.Now().UnixNano())
	took := read(mark, "the row's new text")
	back := read(greeting, "the row's text put back")
	rec.mu.Lock()
	lag, running := rec.replicaLag[replica], rec.replicaRunning[replica]
	rec.mu.Unlock()
	t.Logf("step 2: a row's text written on db-1 was read on db-2 through the VIP by both app nodes after %.1fs, and put back after %.1fs (bound %s); db-2 last pushed imgforge_db_replica_lag_seconds %g, imgforge_db_replica_running %g",
		took.Seconds(), back.Seconds(), replicaBound, lag, running)
}

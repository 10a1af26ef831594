package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// SnapshotTrailer is the HTTP trailer that ends a snapshot's body: "ok"
// when the snapshot command succeeded, else why it failed. A body
// without it was cut.
const SnapshotTrailer = "X-Imgforge-Snapshot"

// SnapshotOK is SnapshotTrailer's value for a complete snapshot.
const SnapshotOK = "ok"

// snapshot serves GET /v1/snapshot: the output of the role's snapshot
// command, to a node of this node's role, while this node is not a
// replica; one at a time. The command's diagnostics go to the agent's
// log; the client learns only whether it succeeded (the trailer).
func (c *Control) snapshot(w http.ResponseWriter, r *http.Request) {
	peer, err := c.verifier.VerifyPeer(r.TLS.PeerCertificates[0], c.o.Identity.Role, c.o.Now())
	switch {
	case err != nil:
		writeJSON(w, http.StatusForbidden, ControlError{err.Error()})
		return
	case r.Method != http.MethodGet:
		w.Header().Set("Allow", http.MethodGet)
		writeJSON(w, http.StatusMethodNotAllowed, ControlError{"accepted: GET"})
		return
	case len(c.o.Snapshot) == 0:
		writeJSON(w, http.StatusNotFound, ControlError{fmt.Sprintf("role %s makes no snapshot (no snapshot: in its role file)", c.o.Identity.Role)})
		return
	case c.o.Mode != nil && c.o.Mode() == config.ModeReplica:
		writeJSON(w, http.StatusConflict, ControlError{fmt.Sprintf("node %s is a %s: ask the primary of role %s for a snapshot", c.o.Identity.Name, config.ModeReplica, c.o.Identity.Role)})
		return
	}
	if !c.snapshotting.TryLock() {
		writeJSON(w, http.StatusTooManyRequests, ControlError{"a snapshot is being made on this node; try again when it is done"})
		return
	}
	defer c.snapshotting.Unlock()
	dir, err := os.MkdirTemp(c.o.SnapshotDir, "imgforge-snapshot-")
	if err != nil {
		c.o.Logf("control: snapshot for %s: %v", peer.Name, err)
		writeJSON(w, http.StatusInternalServerError, ControlError{"making the snapshot's folder failed (see the node's log)"})
		return
	}
	defer os.RemoveAll(dir)
	argv := snapshotArgv(c.o.Snapshot, dir)
	c.o.Logf("control: node %s (%s): snapshot: %s", peer.Name, peer.Role, strings.Join(argv, " "))
	start := time.Now()
	w.Header().Set("Trailer", SnapshotTrailer)
	out := &lazyBody{w: w}
	err = c.o.RunSnapshot(r.Context(), argv, out, logWriter(prefixed(c.o.Logf, "control: snapshot: ")))
	if err == nil && out.n == 0 {
		err = errors.New("the snapshot command wrote nothing")
	}
	if err != nil {
		c.o.Logf("control: snapshot for %s failed after %d bytes: %v", peer.Name, out.n, err)
		if out.n == 0 {
			w.Header().Del("Trailer")
			writeJSON(w, http.StatusInternalServerError, ControlError{fmt.Sprintf("the snapshot command failed: %v (its output is in the node's log)", err)})
			return
		}
		w.Header().Set(SnapshotTrailer, "failed: "+oneLine(err.Error()))
		return
	}
	w.Header().Set(SnapshotTrailer, SnapshotOK)
	c.o.Logf("control: snapshot for %s: %d bytes in %s", peer.Name, out.n, time.Since(start).Round(time.Millisecond))
}

// snapshotArgv is the command with imagemeta.SnapshotDir replaced by dir.
func snapshotArgv(cmd []string, dir string) []string {
	argv := slices.Clone(cmd)
	for i, a := range argv {
		argv[i] = strings.ReplaceAll(a, imagemeta.SnapshotDir, dir)
	}
	return argv
}

// lazyBody sends the 200 header with the first byte, so that a command
// that fails before writing anything is answered with an error instead.
type lazyBody struct {
	w http.ResponseWriter
	n int64
}

func (b *lazyBody) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.n == 0 {
		b.w.Header().Set("Content-Type", "application/octet-stream")
		b.w.WriteHeader(http.StatusOK)
	}
	n, err := b.w.Write(p)
	b.n += int64(n)
	return n, err
}

// execSnapshot runs argv without a shell.
func execSnapshot(ctx context.Context, argv []string, stdout, stderr io.Writer) error {
	if len(argv) == 0 {
		return errors.New("an empty snapshot command")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 10 * time.Second
	return cmd.Run()
}

func prefixed(logf func(string, ...any), prefix string) func(string, ...any) {
	return func(format string, args ...any) { logf(prefix+format, args...) }
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

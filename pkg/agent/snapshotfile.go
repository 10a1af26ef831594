package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/imgforge/imgforge/pkg/atomicfile"
)

// DefaultSnapshotPath is where SnapshotFile writes by default.
const DefaultSnapshotPath = "/run/imgforge/snapshot.json"

// SnapshotFile is a Renderer that writes the snapshot as JSON (settings
// without secrets, self, members), for scripts, health checks and
// debugging. It writes only when the text changed, atomically.
type SnapshotFile struct {
	Path string
	Now  func() time.Time

	mu   sync.Mutex
	file RenderedFile
}

var (
	_ Renderer = (*SnapshotFile)(nil)
	_ Reporter = (*SnapshotFile)(nil)
)

// Render writes the snapshot when it changed.
func (f *SnapshotFile) Render(ctx context.Context, s Snapshot) error {
	b, err := json.MarshalIndent(struct {
		Config  any `json:"config"`
		Self    any `json:"self"`
		Members any `json:"members"`
	}{s.Config, s.Self, s.Members}, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	sum := sha256.Sum256(b)
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, err := os.ReadFile(f.Path); err == nil && bytes.Equal(old, b) {
		f.file = RenderedFile{Path: f.Path, SHA256: hex.EncodeToString(sum[:]), Changed: f.file.Changed}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", f.Path, err)
	}
	if err := atomicfile.WriteFile(f.Path, b, 0o644); err != nil {
		return err
	}
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	f.file = RenderedFile{Path: f.Path, SHA256: hex.EncodeToString(sum[:]), Changed: now()}
	return nil
}

// Report names the file.
func (f *SnapshotFile) Report() Report {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.file.Path == "" {
		return Report{}
	}
	return Report{Files: []RenderedFile{f.file}}
}

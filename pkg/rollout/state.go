package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/imgforge/imgforge/pkg/atomicfile"
)

// StateFile is the rollout's state, beside the cluster file.
const StateFile = ".imgforge-rollout.json"

// StatePath is the state file of the cluster file at clusterFile.
func StatePath(clusterFile string) string {
	return filepath.Join(filepath.Dir(clusterFile), StateFile)
}

// Phases of a node in the state file.
const (
	// PhaseDrained: the node was asked to drain: out of service.
	PhaseDrained = "drained"
	// PhaseUpdated: the node wrote the new image and reboots into it.
	PhaseUpdated = "updated"
)

// State is what a rollout keeps between runs.
type State struct {
	// Nodes are the nodes out of service, by name.
	Nodes map[string]NodeState `json:"nodes"`
	// Done are the nodes that came back on their role's image, by name:
	// the source they run.
	Done map[string]string `json:"done"`
	// Versions are the versions of the sources updated so far.
	Versions map[string]string `json:"versions"`
	// RolledBack are the images that a node did not keep.
	RolledBack []RolledBack `json:"rolled_back,omitempty"`
}

// NodeState is a node out of service.
type NodeState struct {
	Role       string `json:"role"`
	Source     string `json:"source"`
	Phase      string `json:"phase"`
	OldVersion string `json:"old_version,omitempty"`
	NewVersion string `json:"new_version,omitempty"`
}

// RolledBack is an image that a node rolled back from.
type RolledBack struct {
	Role    string `json:"role"`
	Source  string `json:"source"`
	Version string `json:"version,omitempty"`
	Node    string `json:"node"`
	Back    string `json:"back_on,omitempty"` // the version it came back on
}

// lock takes the state's lock (STATE.lock, flock): two rollouts of one
// cluster at once would each keep their own count of nodes out.
func lock(statePath string) (unlock func(), err error) {
	f, err := os.OpenFile(statePath+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the rollout's lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another imgforge rollout of this cluster is running (%s is locked)", f.Name())
	}
	return func() { f.Close() }, nil
}

// ReadState reads the state file at path; a missing file is an empty
// state.
func ReadState(path string) (*State, error) {
	s := &State{}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading the rollout state: %w", err)
	default:
		if err := json.Unmarshal(b, s); err != nil {
			return nil, fmt.Errorf("%s: %w (remove it to start the rollout afresh)", path, err)
		}
	}
	if s.Nodes == nil {
		s.Nodes = map[string]NodeState{}
	}
	if s.Done == nil {
		s.Done = map[string]string{}
	}
	if s.Versions == nil {
		s.Versions = map[string]string{}
	}
	return s, nil
}

// Write writes s to path atomically.
func (s *State) Write(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the rollout state: %w", err)
	}
	return nil
}

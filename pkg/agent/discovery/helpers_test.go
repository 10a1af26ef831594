package discovery

import (
	"crypto/rand"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/agent/identity"
)

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o644) }

// testCA is a cluster CA for tests, with its PEM certificate.
type testCA struct {
	ca      *identity.CA
	certPEM []byte
}

var (
	casMu sync.Mutex
	cas   = map[string]*testCA{}
)

// clusterCA returns the test CA of cluster (made once per test binary;
// "other:CLUSTER" is a second CA for the same cluster name).
func clusterCA(t testing.TB, cluster string) *testCA {
	t.Helper()
	casMu.Lock()
	defer casMu.Unlock()
	if c, ok := cas[cluster]; ok {
		return c
	}
	name := cluster
	if len(name) > 6 && name[:6] == "other:" {
		name = name[6:]
	}
	certPEM, keyPEM, err := identity.NewCA(rand.Reader, name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := identity.ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCA{ca: ca, certPEM: certPEM}
	cas[cluster] = c
	return c
}

// node issues a node identity.
func (c *testCA) node(t testing.TB, role, name string) *identity.Node {
	t.Helper()
	certPEM, keyPEM, err := c.ca.Issue(rand.Reader, role, name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	n, err := identity.ParseNode(c.certPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

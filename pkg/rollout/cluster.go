package rollout

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/imgforge/imgforge/pkg/agent"
	"github.com/imgforge/imgforge/pkg/agent/identity"
	"github.com/imgforge/imgforge/pkg/seed"
)

// OperatorName is the operator certificate's name (CN) the rollout uses.
const OperatorName = "imgforge-rollout"

// Cluster is what a rollout reads of a cluster: its nodes and how to
// reach their control endpoints.
type Cluster struct {
	Nodes []Node
	Dial  func(Node) Client
}

// ForCluster reads the cluster file and the cluster CA from secretsFile
// (imgforge seed's secrets.yaml), and makes an operator certificate from
// the CA, valid for validity, in memory only: it is never written. Nodes'
// control endpoints are at their address and port.
func ForCluster(clusterFile, secretsFile string, roles seed.Roles, port int, r io.Reader, now time.Time, validity time.Duration) (*Cluster, error) {
	cl, err := seed.LoadCluster(clusterFile, roles)
	if err != nil {
		return nil, err
	}
	ca, err := seed.ReadCA(secretsFile, cl.Cluster)
	if err != nil {
		return nil, err
	}
	if validity <= 0 {
		validity = identity.OperatorValidity
	}
	op, err := ca.IssueOperator(r, OperatorName, now, validity)
	if err != nil {
		return nil, err
	}
	out := &Cluster{}
	for _, n := range cl.Nodes {
		host, _, _ := strings.Cut(n.Address, "/")
		if host == "" {
			return nil, fmt.Errorf("%s: node %s has no address; a rollout reaches nodes at their address", clusterFile, n.Name)
		}
		out.Nodes = append(out.Nodes, Node{Name: n.Name, Role: n.Role, Addr: net.JoinHostPort(host, strconv.Itoa(port)), Mode: n.Options["mode"]})
	}
	out.Dial = func(n Node) Client { return agent.NewControlClient(n.Addr, n.Name, ca.Cert, op) }
	return out, nil
}

// ParseImage reads ROLE=SOURCE (imgforge rollout --image).
func ParseImage(s string) (Image, error) {
	role, src, ok := strings.Cut(s, "=")
	if !ok || role == "" || strings.TrimSpace(src) == "" {
		return Image{}, fmt.Errorf("--image %q: accepted: ROLE=SOURCE, SOURCE the URL of a set served by imgforge serve or an OCI reference pushed by imgforge push --boot-from", s)
	}
	return Image{Role: role, Source: src}, nil
}

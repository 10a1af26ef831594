package rollout

import (
	"testing"

	"github.com/imgforge/imgforge/pkg/agent"
	"github.com/imgforge/imgforge/pkg/agent/discovery"
)

func TestInRendered(t *testing.T) {
	n := Node{Name: "web-1", Role: "web"}
	set := func(ms ...discovery.Member) discovery.Set { return discovery.NewSet(ms) }
	for _, tt := range []struct {
		name string
		st   agent.ControlStatus
		want bool
	}{
		{"healthy", agent.ControlStatus{Discovery: "static", Rendered: set(discovery.Member{Name: "web-1", Role: "web", Healthy: true})}, true},
		{"unhealthy", agent.ControlStatus{Discovery: "static", Rendered: set(discovery.Member{Name: "web-1", Role: "web"})}, false},
		{"absent", agent.ControlStatus{Discovery: "static", Rendered: set(discovery.Member{Name: "web-2", Role: "web", Healthy: true})}, false},
		{"gossip unverified", agent.ControlStatus{Discovery: "gossip", Rendered: set(discovery.Member{Name: "web-1", Role: "web", Healthy: true})}, false},
		{"gossip verified", agent.ControlStatus{Discovery: "gossip", Rendered: set(discovery.Member{Name: "web-1", Role: "web", Healthy: true, Verified: true})}, true},
		{"other role", agent.ControlStatus{Rendered: set(discovery.Member{Name: "web-1", Role: "app", Healthy: true})}, false},
	} {
		if got := inRendered(tt.st, n); got != tt.want {
			t.Errorf("%s: %v", tt.name, got)
		}
	}
}

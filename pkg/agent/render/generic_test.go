package render_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/imgforge/imgforge/pkg/agent/render"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// dataRole is a role that exists only as data: a queue whose workers need
// the queue primary, and VIPs held among the queue nodes.
func dataRole() *imagemeta.RoleInfo {
	return &imagemeta.RoleInfo{
		Role: "queue", Discover: []string{"store"}, VIPs: true,
		Ports:         []imagemeta.Port{{Name: "amqp", Port: 5672}},
		DiscoverPorts: map[string][]imagemeta.Port{"store": {{Name: "sql", Port: 5432}}},
		Render: []imagemeta.RenderService{
			{Service: "vrrp", Files: []imagemeta.RenderFile{{Template: "vrrp.tmpl", Path: "/etc/q/vrrp.conf", Check: []string{"true", "{candidate}"}}},
				Reload: [][]string{{"systemctl", "reload", "q.service"}}},
			{Service: "store", Files: []imagemeta.RenderFile{{Template: "store.tmpl", Path: "/etc/q/store.conf", Mode: 0o640, Group: "q", Sensitive: true}}},
		},
	}
}

var dataTemplates = fstest.MapFS{
	"queue/vrrp.tmpl":  {Data: []byte(`{{range vrrp}}{{.Name}} {{.Address}} {{.Interface}} {{.RouterID}} {{.Priority}} {{.Master}};{{end}} mem={{(memory).BufferPoolMiB}}`)},
	"queue/store.tmpl": {Data: []byte(`{{with primary "store"}}{{.HostPort "sql"}} id={{.ID}}{{else}}{{wait (printf "no store primary among the %d store members" (len $.Members.store))}}{{end}}`)},
}

func TestRenderDataRole(t *testing.T) {
	in := func() render.Input {
		return render.Input{
			Self: render.Node{Name: "q-2", Role: "queue", Address: netip.MustParseAddr("10.0.9.2")},
			Members: map[string][]render.Node{
				"queue": {{Name: "q-1", Role: "queue", Address: netip.MustParseAddr("10.0.9.1")}},
			},
			VIPs:        []render.VIP{{Address: netip.MustParseAddr("10.0.9.100"), Prefix: 24, Interface: "eth0"}, {Address: netip.MustParseAddr("10.0.9.101"), Prefix: 24, Interface: "eth0"}},
			MemoryBytes: 4 << 30,
		}
	}
	r := &render.Renderer{Templates: dataTemplates, Role: dataRole()}
	c, err := r.Render(context.Background(), in())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Services) != 1 || string(c.Services[0].Files[0].Data) != "VI_0 10.0.9.100/24 eth0 51 249 false;VI_1 10.0.9.101/24 eth0 52 250 true; mem=2176" {
		t.Fatalf("services %+v", c.Services)
	}
	if f := c.Services[0].Files[0]; f.Mode != 0o644 || f.Owner != "root" || f.Check[1] != "{candidate}" || c.Services[0].Then[0][1] != "reload" {
		t.Errorf("file %+v, then %q", f, c.Services[0].Then)
	}
	if len(c.Waiting) != 1 || c.Waiting[0] != "/etc/q/store.conf: no store primary among the 0 store members" {
		t.Errorf("waiting %q", c.Waiting)
	}

	with := in()
	with.Members["store"] = []render.Node{{Name: "s-1", Role: "store", Address: netip.MustParseAddr("fd00::5"), Primary: true, Port: 6543}}
	c, err = r.Render(context.Background(), with)
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Services[1].Files[0]; string(f.Data) != "[fd00::5]:6543 id=5" || f.Mode != 0o640 || f.Group != "q" || !f.Sensitive {
		t.Errorf("store.conf %+v %q", f, f.Data)
	}

	noVIP := in()
	noVIP.VIPs = nil
	if _, err := r.Render(context.Background(), noVIP); err == nil || !strings.Contains(err.Error(), "vips: the queue role holds the VIPs") {
		t.Errorf("no VIP: %v", err)
	}
	other := in()
	other.Self.Role = "store"
	if _, err := r.Render(context.Background(), other); err == nil || !strings.Contains(err.Error(), "this is the queue image") {
		t.Errorf("another role: %v", err)
	}
	opt := in()
	opt.Options = map[string]string{"mode": "x\ny"}
	if _, err := r.Render(context.Background(), opt); err == nil || !strings.Contains(err.Error(), "options.mode") {
		t.Errorf("an option with a newline: %v", err)
	}
}

func TestValidateRoleInfo(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*imagemeta.RoleInfo)
		want string
	}{
		{"role name", func(ri *imagemeta.RoleInfo) { ri.Role = "Queue" }, "role:"},
		{"template escapes", func(ri *imagemeta.RoleInfo) { ri.Render[0].Files[0].Template = "../lb/x.tmpl" }, "render[0].files[0].template"},
		{"shell in a checker", func(ri *imagemeta.RoleInfo) {
			ri.Render[0].Files[0].Check = []string{"sh", "-c", "true {candidate}; id"}
		}, "render[0].files[0].check"},
		{"checker without the file", func(ri *imagemeta.RoleInfo) { ri.Render[0].Files[0].Check = []string{"true"} }, "does not name the file"},
		{"path", func(ri *imagemeta.RoleInfo) { ri.Render[0].Files[0].Path = "/etc/../x" }, "render[0].files[0].path"},
		{"twice", func(ri *imagemeta.RoleInfo) { ri.Render[1].Files[0].Path = "/etc/q/vrrp.conf" }, "rendered twice"},
		{"from", func(ri *imagemeta.RoleInfo) { ri.Render[0].Files[0].From = "tls-key" }, "one of the two"},
		{"reload", func(ri *imagemeta.RoleInfo) { ri.Render[0].Reload = [][]string{{}} }, "render[0].reload[0]"},
		{"discover port", func(ri *imagemeta.RoleInfo) { ri.DiscoverPorts["other"] = nil }, "not a discovered role"},
		{"snapshot shell", func(ri *imagemeta.RoleInfo) {
			ri.Snapshot = &imagemeta.Snapshot{Command: []string{"sh", "-c", "dump; id"}}
		}, "snapshot.command"},
		{"report exporter", func(ri *imagemeta.RoleInfo) {
			ri.Reports = []imagemeta.Report{{Name: "lag", Exporter: "none", Metrics: []string{"m"}}}
		}, "reports[0]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ri := dataRole()
			tt.edit(ri)
			err := render.ValidateRole(ri)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ValidateRole = %v; want %q", err, tt.want)
			}
		})
	}
	if err := render.ValidateRole(dataRole()); err != nil {
		t.Fatal(err)
	}
}

package config

import (
	"strings"
	"testing"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// Role files as role.json ships them (roles/*.yaml): what CheckRole reads.
var (
	webInfo = imagemeta.RoleInfo{Role: "web", Options: map[string]string{"runtime": "php-fpm"},
		BootOptions: []imagemeta.BootOption{
			{Name: "runtime", Values: []string{"php-fpm", "uwsgi"}, Default: "php-fpm"},
			{Name: "https", Values: []string{"optional", "redirect"}, Default: "redirect"},
		}}
	appInfo = imagemeta.RoleInfo{Role: "app", Options: map[string]string{"runtime": "php-fpm"}, Credentials: []string{"database"}}
	dbInfo  = imagemeta.RoleInfo{Role: "db", Options: map[string]string{"mode": "primary"}, Credentials: []string{"database", "replication"},
		BootOptions: []imagemeta.BootOption{{Name: "mode", Values: []string{"primary", "replica"}, Default: "primary"}}}
	lbInfo = imagemeta.RoleInfo{Role: "lb", VIPs: true}
)

// TestCheckRole: the user-data is checked against the role the image was
// built for, as its role.json declares it, with errors naming the field
// as written and what is accepted.
func TestCheckRole(t *testing.T) {
	web := read(t, "web.yaml")
	db := read(t, "db.yaml")
	dns := read(t, "app-dns.yaml")
	noVIPs := func(s string) string {
		return strings.Replace(s, "  vips:\n    - {address: 10.10.0.100, prefix: 24, interface: eth0}\n", "", 1)
	}
	tests := []struct {
		name, doc, old, new string
		ri                  imagemeta.RoleInfo
		want                string // "" for none
	}{
		{"web", web, "", "", webInfo, ""},
		{"web runtime", web, "role: web", "role: web\n  options: {runtime: uwsgi}", webInfo, ""},
		{"web legacy runtime", web, "role: web", "role: web\n  app: {runtime: uwsgi}", webInfo, ""},
		{"web runtime value", web, "role: web", "role: web\n  app: {runtime: cgi}", webInfo, `field "imgforge.app.runtime": cgi is not accepted by role web; accepted: php-fpm, uwsgi`},
		{"web https optional", web, "role: web", "role: web\n  options: {https: optional}", webInfo, ""},
		{"web https value", web, "role: web", "role: web\n  options: {https: off}", webInfo, `field "imgforge.options.https": off is not accepted by role web; accepted: optional, redirect`},
		{"web unknown option", web, "role: web", "role: web\n  options: {color: blue}", webInfo, `field "imgforge.options.color": role web has no option color; accepted: https, runtime`},
		{"app as built", dns, "runtime: uwsgi", "runtime: php-fpm", appInfo, ""},
		{"app other runtime", dns, "", "", appInfo, `field "imgforge.app.runtime": the user-data says uwsgi but this image was built with runtime=php-fpm; accepted: php-fpm`},
		{"app creds missing", dns, "  database: {user: shop, password: app-password-1}\n", "", imagemeta.RoleInfo{Role: "app", Options: map[string]string{"runtime": "uwsgi"}, Credentials: []string{"database"}}, `field "imgforge.database": role app needs the application's database account; accepted: user and password`},
		{"db", db, "", "", dbInfo, ""},
		{"db mode", db, "mode: replica}", "mode: primary}", imagemeta.RoleInfo{Role: "db", Credentials: []string{"database"},
			BootOptions: []imagemeta.BootOption{{Name: "mode", Values: []string{"replica"}, Default: "replica"}}}, `field "imgforge.db.mode": primary is not accepted by role db; accepted: replica`},
		// The web test document's identity is a web node's: the roles
		// below are web by name and what the test needs by their data.
		{"mode on a role without", web, "role: web", "role: web\n  db: {mode: replica}", imagemeta.RoleInfo{Role: "web"}, `field "imgforge.db.mode": role web has no option mode; accepted: none`},
		{"db repl missing", db, "    replication_user: repl\n    replication_password: repl-password-1\n", "", dbInfo, `field "imgforge.database": role db needs the replication account`},
		{"vips role without vip", noVIPs(web), "", "", imagemeta.RoleInfo{Role: "web", VIPs: true}, `field "imgforge.vips": role web holds the cluster's VIPs (vips: true in its role file) and needs at least one`},
		{"vips role", web, "", "", imagemeta.RoleInfo{Role: "web", VIPs: true}, ""},
		{"other image", web, "", "", lbInfo, `field "imgforge.role": the user-data says web but this is the lb image`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := tt.doc
			if tt.old != "" {
				if !strings.Contains(doc, tt.old) {
					t.Fatalf("test document has no %q", tt.old)
				}
				doc = strings.Replace(doc, tt.old, tt.new, 1)
			}
			c, _, err := Parse("user-data", []byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			err = c.CheckRole(tt.ri)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v\nwant one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// TestCompleteFromRole: options left out take the role's declared
// default, or the image's choice; options given stay.
func TestCompleteFromRole(t *testing.T) {
	c := &Config{Role: "db"}
	ri := dbInfo
	ri.Options = map[string]string{"mode": "replica"}
	ri.BootOptions = []imagemeta.BootOption{{Name: "mode", Values: []string{"primary", "replica"}, Default: "replica"}}
	c.CompleteFromRole(ri)
	if c.Mode() != "replica" {
		t.Errorf("mode %q, want the image's replica", c.Mode())
	}
	c = &Config{Role: "db", Options: map[string]string{"mode": "primary"}}
	c.CompleteFromRole(ri)
	if c.Mode() != "primary" {
		t.Errorf("the settings' mode was overridden: %q", c.Mode())
	}
	c = &Config{Role: "app"}
	c.CompleteFromRole(appInfo)
	if c.Options["runtime"] != "php-fpm" || c.Mode() != "" {
		t.Errorf("options %v, want the image's runtime and no mode", c.Options)
	}
}

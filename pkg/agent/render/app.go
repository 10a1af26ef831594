package render

import "fmt"

// DBConfigPath is the file both application runtimes read the database
// settings from (roles/app/php/index.php, roles/app/python/app.py).
const DBConfigPath = "/etc/imgforge/db.json"

// dbPort is MariaDB's port.
const dbPort = 3306

type appData struct {
	Host, Database, User, Password string
	Port                           int
}

// app renders db.json: the database primary and the application's
// account. Both runtimes read it on every request, so nothing is
// reloaded. While no primary is known the file is left as it is.
func (r *Renderer) app(c *Config, in *Input) error {
	primary, ok := in.primary()
	if !ok {
		c.Waiting = append(c.Waiting, fmt.Sprintf("%s: no db primary among the %d db members", DBConfigPath, len(in.Members[RoleDB])))
		return nil
	}
	b, err := r.execute("app/db.json.tmpl", appData{
		Host: primary.Address.String(), Port: dbPort, Database: in.DB.database(),
		User: in.DB.User, Password: in.DB.Password,
	})
	if err != nil {
		return err
	}
	c.Services = append(c.Services, Service{
		Name: "app-database",
		Files: []File{{
			Path: DBConfigPath, Mode: 0o640, Owner: "root", Group: "www-data", Data: b, Sensitive: true,
			Check: nil, // written by the template's json function: valid by construction
		}},
	})
	return nil
}

// primary is the db member marked primary.
func (in *Input) primary() (Node, bool) {
	for _, n := range in.members(RoleDB, true) {
		if n.Primary {
			return n, true
		}
	}
	return Node{}, false
}

func (d *DB) database() string {
	if d.Name == "" {
		return "imgforge"
	}
	return d.Name
}

package render_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// appScript runs roles/app/python/app.py's answer_request with a stand-in
// pymysql that answers as the host it was asked for, for each path.
const appScript = `
import json, sys, types
pymysql = types.ModuleType("pymysql")
class Cursor:
    def __init__(self, host): self.host = host
    def __enter__(self): return self
    def __exit__(self, *a): pass
    def execute(self, q): pass
    def fetchone(self): return ("hello from " + self.host,)
class Conn:
    def __init__(self, host): self.host = host
    def __enter__(self): return self
    def __exit__(self, *a): pass
    def cursor(self): return Cursor(self.host)
pymysql.connect = lambda host, **kw: Conn(host)
sys.modules["pymysql"] = pymysql
sys.path.insert(0, sys.argv[1])
import app
app.CONFIG = sys.argv[2]
app.socket.gethostname = lambda: "app-1"
for path in sys.argv[3:]:
    out = app.answer_request({"REQUEST_URI": path}, lambda status, headers, body: body)
    sys.stdout.write(out.decode())
`

// TestPythonAppReplicaRoute: /replica reads from the replica db.json
// names, and says so; without one, from the primary. (-B: no __pycache__
// in roles/, which the image embeds.)
func TestPythonAppReplicaRoute(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	dir := t.TempDir()
	for _, c := range []struct{ cfg, want string }{
		{`{"host": "10.0.4.3", "port": 3306, "database": "shop", "user": "u", "password": "p", "replica": {"host": "10.0.4.1", "port": 3306}}`,
			"hello from 10.0.4.3 (served by app-1)\nhello from 10.0.4.1 (served by app-1, read from the replica 10.0.4.1)\n"},
		{`{"host": "10.0.4.3", "port": 3306, "database": "shop", "user": "u", "password": "p"}`,
			"hello from 10.0.4.3 (served by app-1)\nhello from 10.0.4.3 (served by app-1, read from the primary 10.0.4.3)\n"},
	} {
		cfg := filepath.Join(dir, "db.json")
		if err := os.WriteFile(cfg, []byte(c.cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(py, "-B", "-c", appScript, "../../../roles/app/python", cfg, "/", "/replica").CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if string(out) != c.want {
			t.Errorf("with %s:\n%s\nwant\n%s", c.cfg, out, c.want)
		}
		if strings.Contains(string(out), `"p"`) {
			t.Error("the password was printed")
		}
	}
}

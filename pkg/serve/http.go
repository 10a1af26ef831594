package serve

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/names"
)

// The HTTP paths of the server.
const (
	// EntryPath is the script a machine's iPXE starts from (its DHCP boot
	// file, or what an iPXE autoexec script chains): it chains the
	// machine's own script by its MAC address.
	EntryPath = "/boot.ipxe"
	// machinesPath + MAC + ".ipxe" is a machine's script: it sets
	// imgforge-base to its PXE set and imgforge-args to its seed, and
	// chains the set's boot.ipxe. An unknown MAC gets the default role
	// or a menu.
	machinesPath = "/machines/"
	// setsPath + ROLE + "/" + FILE serves ROOT/ROLE/pxe/FILE.
	setsPath = "/sets/"
	// seedPath + MAC + "/" + FILE serves the machine's NoCloud seed.
	seedPath = "/seed/"
)

// handler serves the HTTP side.
type handler struct {
	s *Server
}

func (h handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	switch {
	case p == EntryPath:
		h.script(w, r, entryScript)
	case strings.HasPrefix(p, machinesPath):
		h.machine(w, r, strings.TrimPrefix(p, machinesPath))
	case strings.HasPrefix(p, setsPath):
		h.setFile(w, r, strings.TrimPrefix(p, setsPath))
	case strings.HasPrefix(p, seedPath):
		h.seed(w, r, strings.TrimPrefix(p, seedPath))
	default:
		http.NotFound(w, r)
	}
}

// entryScript chains the booting NIC's own script, relative to the
// entry script's URL.
const entryScript = "#!ipxe\n# imgforge serve: each machine boots what " + MachinesFile + " gives its MAC address.\nchain machines/${netX/mac:hexhyp}.ipxe\n"

func (h handler) script(w http.ResponseWriter, r *http.Request, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	http.ServeContent(w, r, "", time.Time{}, strings.NewReader(s))
}

// parseMAC reads a MAC address in iPXE's hexhyp form (52-54-00-12-34-56).
func parseMAC(s string) (net.HardwareAddr, bool) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 || strings.Count(s, "-") != 5 {
		return nil, false
	}
	return hw, true
}

func hexhyp(mac net.HardwareAddr) string { return strings.ReplaceAll(mac.String(), ":", "-") }

// baseURL is the URL machines reach this server by: the configured one,
// else the scheme and host of the request.
func (h handler) baseURL(r *http.Request) string {
	if h.s.cfg.URL != "" {
		return strings.TrimSuffix(h.s.cfg.URL, "/")
	}
	return "http://" + r.Host
}

// machineTmpl is a machine's script. The seed URL is given as
// ds=nocloud-net: Debian 12's cloud-init (22.4) takes ds=nocloud as a
// local seed and ignores an http:// one.
var machineTmpl = template.Must(template.New("").Parse(`#!ipxe
# imgforge serve: machine {{.MAC}} boots role {{.Role}}{{if .Listed}} (machines file){{else}} (not in the machines file){{end}}.
set ` + boot.IPXEBase + ` {{.Base}}` + setsPath + `{{.Role}}/
set ` + boot.IPXEArgs + ` ds=nocloud-net;s={{.Base}}` + seedPath + `{{.Hexhyp}}/
chain ${` + boot.IPXEBase + `}` + boot.PXEScript + `
`))

var menuTmpl = template.Must(template.New("").Parse(`#!ipxe
# imgforge serve: machine {{.MAC}} is not in the machines file and there is no default role.
menu imgforge: machine {{.MAC}} is unknown; boot which role?
{{range .Roles}}item {{.}} {{.}}
{{end}}choose role || exit 1
chain {{.Hexhyp}}.ipxe?role=${role}
`))

func (h handler) machine(w http.ResponseWriter, r *http.Request, name string) {
	mac, ok := parseMAC(strings.TrimSuffix(name, ".ipxe"))
	if !ok || !strings.HasSuffix(name, ".ipxe") {
		http.Error(w, "want /machines/MAC.ipxe with the MAC address as 52-54-00-12-34-56", http.StatusNotFound)
		return
	}
	roles, err := Roles(h.s.cfg.Root)
	if err != nil {
		http.Error(w, "cannot read the PXE sets", http.StatusInternalServerError)
		return
	}
	data := struct {
		MAC, Hexhyp, Role, Base string
		Listed                  bool
		Roles                   []string
	}{MAC: mac.String(), Hexhyp: hexhyp(mac), Base: h.baseURL(r), Roles: roles}
	if e := h.s.cfg.Machines.Lookup(mac); e != nil {
		data.Role, data.Listed = e.Role, true
	} else if q := r.URL.Query().Get("role"); q != "" {
		if !slices.Contains(roles, q) {
			http.Error(w, fmt.Sprintf("role %q has no PXE set", q), http.StatusNotFound)
			return
		}
		data.Role = q
	} else if h.s.cfg.Machines != nil && h.s.cfg.Machines.Default != "" {
		data.Role = h.s.cfg.Machines.Default
	}
	var b bytes.Buffer
	tmpl := machineTmpl
	if data.Role == "" {
		if len(roles) == 0 {
			h.script(w, r, "#!ipxe\necho imgforge serve: "+h.s.cfg.Root+" holds no PXE set\nexit 1\n")
			return
		}
		tmpl = menuTmpl
	}
	if err := tmpl.Execute(&b, data); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h.s.logf("%s", firstComment(b.String()))
	h.script(w, r, b.String())
}

func firstComment(s string) string {
	_, rest, _ := strings.Cut(s, "\n# imgforge serve: ")
	line, _, _ := strings.Cut(rest, "\n")
	return line
}

// besideSet are the files of a build's output folder (ROOT/ROLE/FILE)
// that /sets/ROLE/FILE serves when the PXE set has none of its own: with
// them a set is also what imgforge-agent update reads (the manifest with
// the root hash, and the overlay).
var besideSet = map[string]bool{"manifest.json": true, "overlay.cpio": true}

// setFile serves ROOT/ROLE/pxe/FILE (or, for the files of besideSet,
// ROOT/ROLE/FILE), with HEAD and Range, through an
// os.Root: nothing outside the root is reachable, by ".." or by a
// symbolic link.
func (h handler) setFile(w http.ResponseWriter, r *http.Request, rest string) {
	role, file, ok := strings.Cut(rest, "/")
	if !ok || !names.Role(role) || file == "" || strings.Contains(file, "/") || strings.HasPrefix(file, ".") {
		http.NotFound(w, r)
		return
	}
	f, err := h.s.root.Open(path.Join(role, "pxe", file))
	if errors.Is(err, fs.ErrNotExist) && besideSet[file] {
		f, err = h.s.root.Open(path.Join(role, file))
	}
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			h.s.logf("refused %s: %v", clean(r.URL.Path), err)
		}
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	if strings.HasSuffix(file, ".ipxe") {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	http.ServeContent(w, r, file, fi.ModTime(), f)
}

func (h handler) seed(w http.ResponseWriter, r *http.Request, rest string) {
	m, file, ok := strings.Cut(rest, "/")
	mac, okMAC := parseMAC(m)
	if !ok || !okMAC {
		http.NotFound(w, r)
		return
	}
	e := h.s.cfg.Machines.Lookup(mac)
	role := "node"
	if e != nil {
		role = e.Role
	} else if h.s.cfg.Machines != nil && h.s.cfg.Machines.Default != "" {
		role = h.s.cfg.Machines.Default
	}
	b, once, err := seedFile(e, mac, role, file)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			h.s.logf("seed of %s: %v", mac, err)
		}
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !once {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
		return
	}
	// A secret-bearing file: once, whole (no ranges), see seedLedger.
	client := clientIP(r)
	now := time.Now()
	grace := h.s.cfg.SeedGrace
	var sent bool
	var prev handout
	if r.Method == http.MethodHead {
		sent = h.s.seeds.peek(mac.String(), file, client, now, grace)
	} else {
		sent, prev = h.s.seeds.take(mac.String(), file, client, now, grace)
	}
	if !sent {
		if r.Method != http.MethodHead {
			h.s.logf("WARNING: refused %s of machine %s to %s: it was handed out to %s at %s; a second fetch may be a thief (if that machine did not boot again, rotate the cluster's secrets); to let the machine fetch its seeds again: %s",
				file, mac, r.RemoteAddr, prev.to, prev.at.UTC().Format(time.RFC3339), h.s.cfg.RearmHint)
		}
		w.Header().Del("Content-Type")
		http.Error(w, "this seed file was handed out already; the operator of imgforge serve can re-arm it", http.StatusGone)
		return
	}
	if !prev.at.IsZero() {
		h.s.logf("%s of machine %s sent again to %s within the grace time (first at %s)", file, mac, r.RemoteAddr, prev.at.UTC().Format(time.RFC3339))
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// clientIP is the address of the client of r.
func clientIP(r *http.Request) net.IP {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return nil
	}
	return net.ParseIP(host)
}

// logged writes one line per request: client, method, path, status,
// bytes sent, duration.
func logged(s *Server, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		rng := ""
		if v := r.Header.Get("Range"); v != "" {
			rng = " " + clean(v)
		}
		s.logf("http %s %s %s%s %d %d %.3fs", r.RemoteAddr, clean(r.Method), clean(r.URL.RequestURI()), rng, rec.status, rec.n.Load(), time.Since(start).Seconds())
	})
}

// recorder keeps the status and size of a response, and lets
// http.ServeContent use sendfile through ReadFrom.
type recorder struct {
	http.ResponseWriter
	status int
	n      atomic.Int64
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	n, err := r.ResponseWriter.Write(p)
	r.n.Add(int64(n))
	return n, err
}

func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(src)
		r.n.Add(n)
		return n, err
	}
	return io.Copy(struct{ io.Writer }{r}, src)
}

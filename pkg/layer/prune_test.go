package layer

import (
	"bytes"
	"context"
	"slices"
	"sort"
	"strings"
	"testing"
)

func TestPruneFilter(t *testing.T) {
	f, err := PruneFilter([]string{"/var/lib/mysql/*", "/etc/x?.conf", "/srv/cache"})
	if err != nil {
		t.Fatal(err)
	}
	for name, keep := range map[string]bool{
		"var/lib/mysql":                 true, // the folder itself stays
		"var/lib/mysql/ibdata1":         false,
		"var/lib/mysql/mysql":           false,
		"var/lib/mysql/mysql/user.frm":  false, // below a match
		"var/lib/mysql/.hidden":         true,  // '*' skips dot files, as sh does
		"var/lib/mysql-files":           true,
		"var/lib/mysqlx/a":              true,
		"var/lib":                       true,
		"etc/x1.conf":                   false,
		"etc/x12.conf":                  true, // '?' is one character
		"etc/x/.conf":                   true, // '?' never matches '/'
		"srv/cache":                     false,
		"srv/cache/a/b":                 false,
		"srv/cached":                    true,
		"srv":                           true,
		"usr/var/lib/mysql/x":           true, // globs are absolute
		"var/lib/mysql/*":               false,
		"var/lib/mysql/a;touch /tmp/pw": false, // a name is only a name
	} {
		if got := f(name, nil); got != keep {
			t.Errorf("%s: kept %v, want %v", name, got, keep)
		}
	}
	if f, err := PruneFilter(nil); f != nil || err != nil {
		t.Errorf("no globs: filter %v, err %v; want none", f != nil, err)
	}
	for _, bad := range []string{"var/lib", "/", "/var/../etc", "/var//lib", "/var/[a"} {
		if _, err := PruneFilter([]string{bad}); err == nil {
			t.Errorf("PruneFilter(%q) gave no error", bad)
		}
	}
}

// TestPruneDiff prunes a role's root filesystem as the role stage does:
// the layer removes exactly what the globs match, with whiteouts for what
// the lower had, and carries nothing pruned.
func TestPruneDiff(t *testing.T) {
	lower := []tent{dir("./", 0o755), dir("./var/", 0o755), dir("./var/lib/", 0o755), file("./var/lib/keep", "k", 0o644)}
	upper := append(slices.Clone(lower),
		dir("./var/lib/mysql/", 0o755),
		file("./var/lib/mysql/ibdata1", "data", 0o660),
		dir("./var/lib/mysql/mysql/", 0o700),
		file("./var/lib/mysql/mysql/user.frm", "u", 0o660),
		file("./var/lib/mysql/.keep", "", 0o644),
		symlink("./var/lib/mysql/sock", "/run/mysqld/mysqld.sock"),
		file("./var/lib/mysql-files", "f", 0o644),
	)
	_, lr := normalizeTents(t, lower)
	prune, err := PruneFilter([]string{"/var/lib/mysql/*"})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := Diff(context.Background(), &out, lr.Index, tarFile(t, upper), testNorm, AllOf(DropDeviceNodes, prune), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range readTar(t, out.Bytes()) {
		names = append(names, e.Name)
	}
	want := []string{"var/lib/mysql/", "var/lib/mysql/.keep", "var/lib/mysql-files"}
	if !slices.Equal(names, want) {
		t.Errorf("layer entries\n  got  %q\n  want %q", names, want)
	}
	var indexed []string
	for p := range res.Index {
		indexed = append(indexed, p)
	}
	sort.Strings(indexed)
	for _, p := range indexed {
		if strings.HasPrefix(p, "var/lib/mysql/") && p != "var/lib/mysql/.keep" {
			t.Errorf("index still has pruned %s", p)
		}
	}

	// What was in the lower is whited out when pruned.
	lower2 := append(slices.Clone(lower), dir("./var/lib/mysql/", 0o755), file("./var/lib/mysql/old", "o", 0o644))
	_, lr2 := normalizeTents(t, lower2)
	out.Reset()
	if _, err := Diff(context.Background(), &out, lr2.Index, tarFile(t, upper), testNorm, AllOf(DropDeviceNodes, prune), nil); err != nil {
		t.Fatal(err)
	}
	names = nil
	for _, e := range readTar(t, out.Bytes()) {
		names = append(names, e.Name)
	}
	want = []string{"var/lib/mysql/.wh.old", "var/lib/mysql/.keep", "var/lib/mysql-files"}
	if !slices.Equal(names, want) {
		t.Errorf("layer entries over a lower with mysql\n  got  %q\n  want %q", names, want)
	}
}

// TestPruneHardLink refuses a layer that would keep a hard link to a
// pruned file: its content would be lost.
func TestPruneHardLink(t *testing.T) {
	upper := []tent{dir("./", 0o755), dir("./srv/", 0o755), file("./srv/a", "a", 0o644), hardlink("./srv-b", "./srv/a")}
	prune, err := PruneFilter([]string{"/srv/*"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Diff(context.Background(), &bytes.Buffer{}, Index{}, tarFile(t, upper), testNorm, prune, nil)
	if err == nil || !strings.Contains(err.Error(), "srv-b") {
		t.Fatalf("err = %v, want one naming srv-b", err)
	}
}

// Package rolenames_test keeps roles data in the agent and the seed
// (issue 12): no Go code outside tests in the agent (cmd/imgforge-agent,
// pkg/agent/...) or in imgforge seed (pkg/seed) holds the name of a role,
// a runtime or a mode as a string literal, so none can decide by it. What
// a role needs comes from its role file (role.json on the node).
package rolenames_test

import (
	"go/scanner"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The names of the shipped roles and of their options' values.
var roleWords = []string{"lb", "web", "app", "db", "uwsgi", "php-fpm", "primary", "replica"}

// allowed are the literals that stay, by file and value, with the reason.
var allowed = []struct{ file, value, reason string }{
	{"pkg/agent/config/types.go", "primary", "a member mode: discovery carries primary or replica for any role with a mode option"},
	{"pkg/agent/config/types.go", "replica", "a member mode (as above)"},
	{"pkg/agent/config/options.go", "app", "an earlier spelling of imgforge.options (app: {runtime: ...}) still read on any node; it decides nothing by role"},
	{"pkg/agent/config/options.go", "db", "an earlier spelling of imgforge.options (db: {mode: ...}), as above"},
	{"pkg/agent/discovery/meta.go", "primary", "gossip's wire code of a member mode"},
	{"pkg/agent/discovery/meta.go", "replica", "gossip's wire code of a member mode"},
	{"pkg/agent/render/generic.go", "primary", "the name of the template function that picks a role's primary member"},
}

var trees = []string{"cmd/imgforge-agent", "pkg/agent", "pkg/seed"}

func TestNoRoleNamesInGo(t *testing.T) {
	used := make([]bool, len(allowed))
	for _, tree := range trees {
		err := filepath.WalkDir(filepath.Join("..", "..", tree), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "testdata" {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			rel := filepath.ToSlash(strings.TrimPrefix(path, filepath.Join("..", "..")+string(filepath.Separator)))
			for _, lit := range roleLiterals(t, path) {
				i := slices.IndexFunc(allowed, func(a struct{ file, value, reason string }) bool {
					return a.file == rel && a.value == lit.value
				})
				if i < 0 {
					t.Errorf("%s:%d: the string literal %q names a role, runtime or mode: take it from the role's data (role.json, the role file), or add it to the allow-list with a reason", rel, lit.line, lit.value)
					continue
				}
				used[i] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, u := range used {
		if !u {
			t.Errorf("allow-list entry %s %q is not used any more: remove it", allowed[i].file, allowed[i].value)
		}
	}
}

type literal struct {
	value string
	line  int
}

// roleLiterals lists the string literals of a Go file whose value is one
// of roleWords.
func roleLiterals(t *testing.T, path string) []literal {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	file := fset.AddFile(path, -1, len(src))
	var s scanner.Scanner
	s.Init(file, src, func(pos token.Position, msg string) { t.Errorf("%s: %s", pos, msg) }, 0)
	var out []literal
	for {
		pos, tok, lit := s.Scan()
		if tok == token.EOF {
			return out
		}
		if tok != token.STRING {
			continue
		}
		v, err := strconv.Unquote(lit)
		if err != nil {
			t.Fatalf("%s: %v", fset.Position(pos), err)
		}
		if slices.Contains(roleWords, v) {
			out = append(out, literal{v, fset.Position(pos).Line})
		}
	}
}

package names

import (
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	long := func(n int) string { return "a" + strings.Repeat("b", n-1) }
	for _, tc := range []struct {
		s                         string
		word, cluster, role, node bool
	}{
		{"lb", true, true, true, true},
		{"web-1", true, true, true, true},
		{"1web", false, false, false, true},
		{"web-", true, true, true, false},
		{"-web", false, false, false, false},
		{"Web", false, false, false, false},
		{"web_1", false, false, false, false},
		{"web.1", false, false, false, false},
		{"", false, false, false, false},
		{long(32), true, true, true, true},
		{long(33), true, true, false, true},
		{long(63), true, true, false, true},
		{long(64), false, false, false, false},
		{"a\n", false, false, false, false},
	} {
		if Word(tc.s) != tc.word || Cluster(tc.s) != tc.cluster || Role(tc.s) != tc.role || Node(tc.s) != tc.node {
			t.Errorf("%q: Word %v Cluster %v Role %v Node %v; want %v %v %v %v", tc.s,
				Word(tc.s), Cluster(tc.s), Role(tc.s), Node(tc.s), tc.word, tc.cluster, tc.role, tc.node)
		}
	}
}

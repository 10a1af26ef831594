package identity

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"
)

// TestOperatorAndNodeApart: an operator certificate is not a node's, and
// a node's is not an operator's.
func TestOperatorAndNodeApart(t *testing.T) {
	now := time.Now()
	certPEM, keyPEM, err := NewCA(rand.Reader, "shop", now)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(ca.Cert)
	op, err := ca.IssueOperator(rand.Reader, "alice", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if name, err := v.VerifyOperator(op.Leaf, now); err != nil || name != "alice" {
		t.Errorf("operator: %q %v", name, err)
	}
	if _, _, err := v.Verify(op.Leaf.Raw, now); err == nil {
		t.Error("an operator certificate passed as a node's")
	}
	if _, err := v.VerifyOperator(op.Leaf, now.Add(2*time.Hour)); err == nil {
		t.Error("an operator certificate was accepted after its end")
	}
	nodePEM, _, err := ca.Issue(rand.Reader, "web", "web-1", now)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := parseCert(nodePEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyOperator(nc, now); err == nil {
		t.Error("a node certificate passed as an operator's")
	}
	// A role named like the operator organization does not help.
	nodePEM, _, err = ca.Issue(rand.Reader, OperatorOrg, "x", now)
	if err != nil {
		t.Fatal(err)
	}
	nc, _ = parseCert(nodePEM)
	if _, err := v.VerifyOperator(nc, now); err == nil {
		t.Errorf("a node certificate of role %s passed as an operator's", OperatorOrg)
	}
	other, otherKey, _ := NewCA(rand.Reader, "shop", now)
	oca, _ := ParseCA(other, otherKey)
	oop, _ := oca.IssueOperator(rand.Reader, "mallory", now, time.Hour)
	if _, err := v.VerifyOperator(oop.Leaf, now); err == nil || !strings.Contains(err.Error(), "not an operator certificate of the cluster CA") {
		t.Errorf("another CA's operator: %v", err)
	}
}

package main

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeTemplate: the README's section on Packer shows the template
// the acceptance test builds, as it is.
func TestReadmeTemplate(t *testing.T) {
	tpl, err := os.ReadFile("example/lb.pkr.hcl")
	if err != nil {
		t.Fatal(err)
	}
	body := string(tpl[strings.Index(string(tpl), "\npacker {")+1:])
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```hcl\n"+body+"```\n") {
		t.Errorf("README.md does not show example/lb.pkr.hcl as it is (from \"packer {\" on); copy it there:\n%s", body)
	}
}

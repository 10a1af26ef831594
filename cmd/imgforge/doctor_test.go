package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/imgforge/imgforge/pkg/build"
)

func TestDoctor(t *testing.T) {
	all := []string{"mmdebstrap", "newuidmap", "newgidmap", "tar2sqfs", "veritysetup", "mke2fs", "qemu-img", "xorriso", "tar", "qemu-system-x86_64"}
	without := func(missing ...string) func(string) (string, error) {
		return func(n string) (string, error) {
			if slices.Contains(all, n) && !slices.Contains(missing, n) {
				return "/usr/bin/" + n, nil
			}
			return "", &exec.Error{Name: n, Err: exec.ErrNotFound}
		}
	}
	tests := []struct {
		name     string
		args     []string
		euid     int
		missing  []string
		wantErr  string
		wantOut  []string
		wantCode int
	}{
		{"all installed", []string{"doctor"}, 0, nil, "", []string{
			"build of oci, docker-archive, raw, qcow2, vmdk, vhd, gce, iso, pxe (as root):",
			"  ok  tar          /usr/bin/tar",
			"  ok  mmdebstrap   /usr/bin/mmdebstrap",
			"  ok  xorriso      /usr/bin/xorriso",
			"everything a build needs is installed",
		}, exitOK},
		{"rootless without uidmap", []string{"doctor", "--format", "oci"}, 1000, []string{"newuidmap", "newgidmap"},
			"missing programs: newuidmap (mmdebstrap's unshare mode, when not run as root), newgidmap (mmdebstrap's unshare mode, when not run as root); install them with: apt-get install uidmap",
			[]string{"build of oci (without root: mmdebstrap's unshare mode):", "MISSING  newuidmap   (Debian package uidmap)", "install what a build needs with: apt-get install uidmap"}, exitFailure},
		{"iso only needs xorriso", []string{"doctor", "--format=iso"}, 0, []string{"qemu-img", "mke2fs"}, "", []string{"everything a build needs is installed"}, exitOK},
		{"run's qemu is not a build's", []string{"doctor", "--format=raw"}, 0, []string{"qemu-system-x86_64"}, "",
			[]string{"imgforge run:\n  MISSING  qemu-system-x86_64  (Debian package qemu-system-x86)  imgforge run\neverything a build needs is installed"}, exitOK},
		{"bad format", []string{"doctor", "--format", "floppy"}, 0, nil, `--format: unknown output format "floppy"`, nil, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			root := newRootCmd(&out, &out, func(string) string { return "" })
			for _, c := range root.Commands() {
				if c.Name() == "doctor" {
					root.RemoveCommand(c)
				}
			}
			root.AddCommand(newDoctorCmd(&common{}, without(tt.missing...), func() int { return tt.euid }))
			root.SetArgs(tt.args)
			cmd, err := root.ExecuteC()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if code := exitCode(t.Context(), cmd, err); err != nil && code != tt.wantCode {
				t.Errorf("exit code %d, want %d", code, tt.wantCode)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output does not hold %q:\n%s", w, out.String())
				}
			}
		})
	}

	var out bytes.Buffer
	root := newRootCmd(&out, &out, func(string) string { return "" })
	for _, c := range root.Commands() {
		if c.Name() == "doctor" {
			root.RemoveCommand(c)
		}
	}
	root.AddCommand(newDoctorCmd(&common{}, without("tar2sqfs"), func() int { return 0 }))
	root.SetArgs([]string{"doctor", "--format", "pxe", "-o", "json"})
	err := root.Execute()
	var me *build.MissingToolsError
	if !errors.As(err, &me) {
		t.Fatalf("error %v", err)
	}
	var r doctorReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if !slices.Equal(r.Install, []string{"squashfs-tools-ng"}) || len(r.Build) != 3 || r.Build[1].Path != "" || r.Build[0].Path != "/usr/bin/mmdebstrap" {
		t.Errorf("report %+v", r)
	}
}

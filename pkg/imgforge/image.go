package imgforge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/plan"
	"github.com/imgforge/imgforge/pkg/qemu"
	"github.com/imgforge/imgforge/pkg/seed"
	"github.com/imgforge/imgforge/pkg/spec"
	"github.com/imgforge/imgforge/pkg/verify"
)

// ImageFormats are the formats of an image file that FindImage finds and
// a machine boots.
var ImageFormats = []string{"raw", "qcow2", "iso"}

// imageExtensions map a file name's extension to its image format.
var imageExtensions = map[string]string{".raw": "raw", ".img": "raw", ".qcow2": "qcow2", ".iso": "iso"}

// Image is a built image file.
type Image struct {
	Path   string
	Format string // raw, qcow2 or iso
	Name   string // a host name made from the role or the file name
}

// FindImage finds the image that arg names: a role, whose image is
// outDir/ROLE/ROLE.FORMAT, or an image file, which anything with a path
// separator or an image extension is. format is one of ImageFormats, or
// empty for raw (a role) or the file's extension (a file). The image must
// exist and be a file.
func FindImage(arg, format, outDir string) (Image, error) {
	if format != "" && !slices.Contains(ImageFormats, format) {
		return Image{}, fmt.Errorf("image format %q: accepted: %s", format, strings.Join(ImageFormats, ", "))
	}
	ext := strings.ToLower(filepath.Ext(arg))
	isPath := strings.ContainsRune(arg, filepath.Separator) || imageExtensions[ext] != ""
	var img Image
	if isPath {
		if format == "" {
			format = imageExtensions[ext]
		}
		if format == "" {
			return Image{}, fmt.Errorf("image %s: cannot tell its format from the extension %q: name it .raw, .img, .qcow2 or .iso, or give its format", arg, ext)
		}
		img = Image{Path: arg, Format: format, Name: HostName(strings.TrimSuffix(filepath.Base(arg), filepath.Ext(arg)))}
	} else {
		if format == "" {
			format = "raw"
		}
		img = Image{Path: filepath.Join(outDir, arg, arg+"."+format), Format: format, Name: HostName(arg)}
	}
	fi, err := os.Stat(img.Path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !isPath {
			return Image{}, fmt.Errorf("image %s not found: build role %s first", img.Path, arg)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return Image{}, fmt.Errorf("image %s not found", img.Path)
		}
		return Image{}, fmt.Errorf("image %s: %w", img.Path, err)
	}
	if !fi.Mode().IsRegular() {
		return Image{}, fmt.Errorf("image %s is not a file", img.Path)
	}
	return img, nil
}

// ManifestPath is where a build leaves the image's manifest: beside it.
func (i Image) ManifestPath() string {
	return filepath.Join(filepath.Dir(i.Path), imagemeta.ManifestName)
}

// HostName makes s a host name: lower-case letters, digits and '-', at
// most 63 of them; "imgforge" when nothing is left.
func HostName(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			b[i] = '-'
		}
	}
	h := strings.Trim(string(b), "-")
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-")
	}
	if h == "" {
		return "imgforge"
	}
	return h
}

// ManifestPlan decodes the plan a manifest records as its build's input.
func ManifestPlan(m *imagemeta.Manifest) (*plan.Plan, error) {
	if len(m.Inputs.Plan) == 0 || string(m.Inputs.Plan) == "null" {
		return nil, errors.New("the manifest records no plan")
	}
	var p plan.Plan
	if err := json.Unmarshal(m.Inputs.Plan, &p); err != nil {
		return nil, fmt.Errorf("reading the manifest's plan: %w", err)
	}
	return &p, nil
}

// ForwardBase is added to a guest's port to make the host port that
// DefaultForwards forwards to it.
const ForwardBase = 10000

// DefaultForwards forwards 127.0.0.1:ForwardBase+P to SSH (22) and to
// every port P of the role that built the image, as its manifest records
// them. An image without a readable manifest gets SSH only; ports that
// would land above 65535 are left out.
func DefaultForwards(img Image) []qemu.Forward {
	ports := []spec.Port{{Name: "ssh", Port: 22, Protocol: "tcp"}}
	if m, err := imagemeta.ReadManifest(img.ManifestPath()); err == nil {
		if p, err := ManifestPlan(m); err == nil {
			ports = append(ports, p.Ports...)
		}
	}
	var fs []qemu.Forward
	seen := map[string]bool{}
	for _, p := range ports {
		proto := p.Protocol
		if proto == "" {
			proto = "tcp"
		}
		key := proto + "/" + strconv.Itoa(p.Port)
		if seen[key] || p.Port < 1 || p.Port+ForwardBase > 65535 || proto != "tcp" && proto != "udp" {
			continue
		}
		seen[key] = true
		fs = append(fs, qemu.Forward{Protocol: proto, HostAddr: "127.0.0.1", HostPort: ForwardBase + p.Port, GuestPort: p.Port})
	}
	return fs
}

// Verify checks the image against its manifest: the one at manifestPath,
// or, when that is empty, the one beside the image. It checks raw disks
// and ISOs; a qcow2 is refused. The error wraps verify.ErrFailed when a
// check failed; any other error means the checks could not run.
func Verify(ctx context.Context, img Image, manifestPath string) (verify.Report, error) {
	check := verify.Raw
	switch img.Format {
	case "iso":
		check = verify.ISO
	case "qcow2":
		return verify.Report{}, fmt.Errorf("image %s: verify reads raw disks and ISOs, not qcow2: verify the raw disk it was made from, or `qemu-img convert -O raw` it first", img.Path)
	}
	if manifestPath == "" {
		manifestPath = img.ManifestPath()
	}
	return check(ctx, img.Path, manifestPath)
}

// SeedISO returns the NoCloud seed ISO to boot img with, given seedPath:
// seedPath itself when it is a file (taken to be a seed ISO); an ISO made
// in dir from the seed folder seedPath (see seed.ReadDir); or, when
// seedPath is empty, an ISO made in dir of a default seed named after the
// image. The ISOs made carry the image's modification time.
func SeedISO(seedPath string, img Image, dir string) (string, error) {
	iso := filepath.Join(dir, "seed.iso")
	modTime := time.Unix(0, 0)
	if fi, err := os.Stat(img.Path); err == nil {
		modTime = fi.ModTime()
	}
	if seedPath == "" {
		if err := seed.WriteISO(iso, seed.Default(img.Name, img.Name), modTime); err != nil {
			return "", fmt.Errorf("writing the default seed: %w", err)
		}
		return iso, nil
	}
	fi, err := os.Stat(seedPath)
	if err != nil {
		return "", fmt.Errorf("reading the seed: %w", err)
	}
	if fi.Mode().IsRegular() {
		return seedPath, nil
	}
	s, err := seed.ReadDir(seedPath)
	if err != nil {
		return "", err
	}
	if err := seed.WriteISO(iso, s, modTime); err != nil {
		return "", fmt.Errorf("seed folder %s: %w", seedPath, err)
	}
	return iso, nil
}

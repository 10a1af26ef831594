package build

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/imgforge/imgforge/pkg/ctxio"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/units"

	"github.com/klauspost/pgzip"

	cloudinit "github.com/imgforge/imgforge/cloud-init"
	"github.com/imgforge/imgforge/pkg/cache"
	"github.com/imgforge/imgforge/pkg/debian"
	"github.com/imgforge/imgforge/pkg/layer"
	"github.com/imgforge/imgforge/pkg/plan"
)

// Stage versions: bump one when what the stage writes changes for the
// same inputs, so that old cache entries are not reused.
const (
	baseStage    = "base-v2" // v2: the record keeps the copyright files and os-release (Docs)
	roleStage    = "role-v3" // v3: likewise (role-v2 was used before)
	overlayStage = "overlay-v2"
)

// layerRecord is what the cache keeps of a built layer.
type layerRecord struct {
	Blob   string `json:"blob,omitempty"` // gzip-compressed layer; empty for "no layer"
	DiffID string `json:"diff_id,omitempty"`
	Size   int64  `json:"size,omitempty"`
	Tar    string `json:"tar,omitempty"`   // the uncompressed root filesystem tar (base only)
	Lists  string `json:"lists,omitempty"` // apt lists of the base, under the cache's lists/
	Index  string `json:"index"`           // JSON layer.Index of the whole root filesystem
	Status string `json:"status"`          // var/lib/dpkg/status of the whole root filesystem
	Passwd string `json:"passwd"`
	Group  string `json:"group"`
	// Docs is a JSON object of the docFiles of the whole root filesystem,
	// path to content: what the SBOM reads the licences and the release
	// from.
	Docs string `json:"docs"`
}

type builtLayer struct {
	Kind   string
	Record layerRecord
}

var keepFiles = append([]string{"etc/passwd", "etc/group", "var/lib/dpkg/status"}, docFiles...)

// docFiles are the files the SBOM reads (pkg/sbom): the packages'
// machine-readable copyright files, which images keep (images/*.yaml
// include them), and os-release.
var docFiles = []string{"usr/share/doc/*/copyright", "usr/lib/os-release"}

// apt's download folders get the owners a root build with a private
// cache (/root is 0700) always gave them, whatever the mode. apt gives
// them to its sandbox user, _apt, when that user can enter the chroot,
// and mmdebstrap runs it outside the chroot, last of all as it cleans up
// (apt-get update and clean), as root when _apt cannot: so they became
// _apt's in unshare mode (without root) and under world-searchable
// folders, and stayed root's otherwise. The role stage's apt-get install
// runs in the chroot, where archives/partial is always _apt's; only the
// cleanup touches lists/partial there.
var (
	// aptPartial are root's in the base.
	aptPartial = []string{"var/cache/apt/archives/partial", aptListsPartial}
	// aptListsPartial is root's in the role's layer too.
	aptListsPartial = "var/lib/apt/lists/partial"
)

// layerBlobs are the blobs a layer record names that a cache hit must
// still hold (the base's uncompressed tar is checked by the stages that
// read it).
func layerBlobs(rec layerRecord) []string {
	check := []string{rec.Index, rec.Status, rec.Passwd, rec.Group, rec.Docs}
	if rec.Blob != "" {
		check = append(check, rec.Blob)
	}
	return check
}

func layerID(rec layerRecord) string { return short(rec.Blob) }

func short(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// baseKey is what the Debian base is made of.
type baseKey struct {
	Mmdebstrap   string
	Suite        string
	Architecture string
	Sources      []string
	Releases     []string // the InRelease digest of each source
	Packages     []string
	Exclude      []string
	Include      []string
	Epoch        int64
	// Unshare is always false. It was whether mmdebstrap ran in unshare
	// mode (without root); but that mode writes the same tar as root mode
	// (mmdebstrap(1)), so a build without root has the keys, the manifest
	// and the outputs of a build with root. It stays so that the keys of
	// existing caches stay valid.
	Unshare bool
	// Plan names the definition's lines in errors; its fields that the
	// base reads are the ones above.
	Plan *plan.Plan `key:"-"`
}

func (b *Builder) baseKey(ctx context.Context, p *plan.Plan) (baseKey, error) {
	rel, err := b.releaseDigests(ctx, p.Distribution.Sources)
	if err != nil {
		return baseKey{}, err
	}
	return baseKey{
		Mmdebstrap: b.mmdVersion, Suite: p.Distribution.Suite, Architecture: p.Architecture, Sources: p.Distribution.Sources, Releases: rel,
		Packages: p.BasePackages, Exclude: p.Exclude, Include: p.Include, Epoch: p.SourceDateEpoch, Plan: p,
	}, nil
}

// baseStage is the Debian base: mmdebstrap's root filesystem, kept both
// compressed (the lowest layer) and as a tar (what the role's packages,
// the initramfs and the root filesystem start from), with its apt lists.
func (b *Builder) baseStage() stage[baseKey, layerRecord] {
	return stage[baseKey, layerRecord]{
		name: "base", version: baseStage, blobs: layerBlobs, cached: layerID, run: b.runBase,
		check: func(rec layerRecord) (string, bool) {
			if rec.Lists == "" {
				return "", true
			}
			fi, err := os.Stat(filepath.Join(b.o.Cache.Dir(), "lists", rec.Lists))
			return "apt lists", err == nil && fi.IsDir()
		},
	}
}

func (b *Builder) runBase(ctx context.Context, st *Stage, k baseKey, key string) (layerRecord, string, error) {
	p := k.Plan
	var rec layerRecord
	st.Update(fmt.Sprintf("mmdebstrap %s, %d packages", k.Suite, len(k.Packages)))
	tmp, err := b.o.Cache.TempDir("base-")
	if err != nil {
		return rec, "", err
	}
	defer removeAllQuiet(tmp)
	lists := filepath.Join(tmp, "lists")
	if err := os.Mkdir(lists, 0o755); err != nil {
		return rec, "", err
	}
	bs := &debian.Bootstrap{
		Suite: k.Suite, Architecture: k.Architecture, Sources: k.Sources,
		Packages: k.Packages, Exclude: k.Exclude, Include: k.Include, Epoch: k.Epoch,
		DebCache: b.o.Cache.DebDir(), ListsOut: lists, Output: filepath.Join(tmp, "root.tar"),
		TempDir: tmp, Rootless: b.o.Rootless, Log: st.LogWriter(b.o.Log),
	}
	if err := b.o.Tools.Bootstrap(ctx, bs); err != nil {
		return rec, "", packageError(p, err)
	}
	st.Update("compressing")
	f, err := os.Open(bs.Output)
	if err != nil {
		return rec, "", err
	}
	defer f.Close()
	var res *layer.Result
	rec, err = b.writeLayer(ctx, true, func(w io.Writer) error {
		var err error
		res, err = layer.Normalize(ctx, w, f, layer.Normalizer{Epoch: time.Unix(k.Epoch, 0).UTC(), RootOwned: aptPartial}, layer.DropDeviceNodes, keepFiles)
		return err
	})
	if err != nil {
		return rec, "", err
	}
	if err := b.storeRootInfo(&rec, res); err != nil {
		return rec, "", err
	}
	listsDir := filepath.Join(b.o.Cache.Dir(), "lists")
	if err := os.MkdirAll(listsDir, 0o755); err != nil {
		return rec, "", err
	}
	rec.Lists = strings.TrimPrefix(key, "sha256:")
	dst := filepath.Join(listsDir, rec.Lists)
	os.RemoveAll(dst)
	if err := os.Rename(lists, dst); err != nil {
		return rec, "", fmt.Errorf("storing apt lists: %w", err)
	}
	return rec, fmt.Sprintf("%s, %s compressed", short(rec.Blob), units.Bytes(rec.Size)), nil
}

// roleKey is what the role's packages layer is made of: the base and the
// packages installed on it.
type roleKey struct {
	Base     string // the base's key
	Packages []string
	Prune    []string
	Exclude  []string
	Include  []string
	// BaseRecord is the base the key names.
	BaseRecord layerRecord `key:"-"`
	// Plan gives the suite, sources and epoch, which Base holds.
	Plan *plan.Plan `key:"-"`
}

// roleStage installs the role's packages on the base and keeps what
// changed as a layer, without what the role's prune globs name.
func (b *Builder) roleStage() stage[roleKey, layerRecord] {
	return stage[roleKey, layerRecord]{name: "packages", version: roleStage, blobs: layerBlobs, cached: layerID, run: b.runRole}
}

func (b *Builder) role(ctx context.Context, p *plan.Plan, base layerRecord, baseKey string) (layerRecord, string, error) {
	k := roleKey{Base: baseKey, Packages: p.Packages, Prune: p.Prune, Exclude: p.Exclude, Include: p.Include, BaseRecord: base, Plan: p}
	if len(p.Packages) == 0 && len(p.Prune) == 0 {
		// No layer: the role's root is the base's.
		b.o.Progress.Start(p.Role, "packages").Done("none beyond the base")
		return layerRecord{Index: base.Index, Status: base.Status, Passwd: base.Passwd, Group: base.Group, Docs: base.Docs}, cache.KeyOf(roleStage, k), nil
	}
	return runStage(ctx, b, p.Role, b.roleStage(), k)
}

func (b *Builder) runRole(ctx context.Context, st *Stage, k roleKey, _ string) (layerRecord, string, error) {
	p, base := k.Plan, k.BaseRecord
	var rec layerRecord
	if err := b.verify(ctx, base.Tar); err != nil {
		if !errors.Is(err, cache.ErrCorrupt) {
			return rec, "", err
		}
		_ = b.o.Cache.Delete(baseStage, k.Base)
		return rec, "", fmt.Errorf("the cached base is damaged (%w); run the build again to rebuild it", err)
	}
	st.Update(fmt.Sprintf("installing %s", strings.Join(k.Packages, " ")))
	tmp, err := b.o.Cache.TempDir("role-")
	if err != nil {
		return rec, "", err
	}
	defer removeAllQuiet(tmp)
	bs := &debian.Bootstrap{
		Suite: p.Distribution.Suite, Architecture: p.Architecture, Sources: p.Distribution.Sources,
		Packages: k.Packages, Exclude: k.Exclude, Include: k.Include, Epoch: p.SourceDateEpoch,
		On: b.o.Cache.BlobPath(base.Tar), ListsIn: filepath.Join(b.o.Cache.Dir(), "lists", base.Lists),
		DebCache: b.o.Cache.DebDir(), Output: filepath.Join(tmp, "root.tar"),
		TempDir: tmp, Rootless: b.o.Rootless, Log: st.LogWriter(b.o.Log),
	}
	if err := b.o.Tools.Bootstrap(ctx, bs); err != nil {
		return rec, "", packageError(p, err)
	}
	st.Update("diffing against the base")
	lower, err := b.readIndex(base.Index)
	if err != nil {
		return rec, "", err
	}
	// The role's prune globs are applied here, to the names in the tar:
	// no shell, and no symlink followed.
	prune, err := layer.PruneFilter(k.Prune)
	if err != nil {
		return rec, "", err
	}
	var res *layer.Result
	rec, err = b.writeLayer(ctx, false, func(w io.Writer) error {
		var err error
		res, err = layer.Diff(ctx, w, lower, bs.Output, layer.Normalizer{Epoch: epoch(p), RootOwned: []string{aptListsPartial}}, layer.AllOf(layer.DropDeviceNodes, prune), keepFiles)
		return err
	})
	if err != nil {
		return rec, "", err
	}
	if err := b.storeRootInfo(&rec, res); err != nil {
		return rec, "", err
	}
	return rec, fmt.Sprintf("%s, %s compressed", short(rec.Blob), units.Bytes(rec.Size)), nil
}

func (b *Builder) readIndex(digest string) (layer.Index, error) {
	data, err := b.o.Cache.ReadBlob(digest)
	if err != nil {
		return nil, err
	}
	var idx layer.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%w: index %s: %w", cache.ErrCorrupt, digest, err)
	}
	return idx, nil
}

// storeRootInfo keeps the index and the files later stages read.
func (b *Builder) storeRootInfo(rec *layerRecord, res *layer.Result) error {
	idx, err := json.Marshal(res.Index)
	if err != nil {
		return err
	}
	for _, x := range []struct {
		dst  *string
		data []byte
		what string
	}{{&rec.Index, idx, "index"}, {&rec.Status, res.Files["var/lib/dpkg/status"], "dpkg status"}, {&rec.Passwd, res.Files["etc/passwd"], "/etc/passwd"}, {&rec.Group, res.Files["etc/group"], "/etc/group"}} {
		if x.data == nil {
			return fmt.Errorf("the root filesystem has no %s", x.what)
		}
		d, err := b.o.Cache.PutBlob(x.data)
		if err != nil {
			return err
		}
		*x.dst = d
	}
	docs := map[string]string{}
	for name, data := range res.Files {
		if slices.ContainsFunc(docFiles, func(g string) bool { ok, _ := path.Match(g, name); return ok }) {
			docs[name] = string(data)
		}
	}
	dj, err := json.Marshal(docs)
	if err != nil {
		return err
	}
	rec.Docs, err = b.o.Cache.PutBlob(dj)
	return err
}

// writeLayer runs write with a writer whose bytes become a gzip layer blob
// (and, with keepTar, an uncompressed tar blob too).
func (b *Builder) writeLayer(ctx context.Context, keepTar bool, write func(io.Writer) error) (layerRecord, error) {
	var rec layerRecord
	gzBlob, err := b.o.Cache.NewBlob()
	if err != nil {
		return rec, err
	}
	defer gzBlob.Abort()
	var tarBlob *cache.BlobWriter
	if keepTar {
		if tarBlob, err = b.o.Cache.NewBlob(); err != nil {
			return rec, err
		}
		defer tarBlob.Abort()
	}
	zw, err := pgzip.NewWriterLevel(gzBlob, pgzip.BestSpeed)
	if err != nil {
		return rec, err
	}
	if err := zw.SetConcurrency(1<<20, 4); err != nil {
		return rec, err
	}
	diff := sha256.New()
	ws := []io.Writer{zw, diff}
	if keepTar {
		ws = append(ws, tarBlob)
	}
	if err := write(ctxio.Writer(ctx, io.MultiWriter(ws...))); err != nil {
		zw.Close()
		return rec, err
	}
	if err := zw.Close(); err != nil {
		return rec, fmt.Errorf("compressing layer: %w", err)
	}
	rec.DiffID = hexDigest(diff)
	if rec.Blob, rec.Size, err = gzBlob.Commit(); err != nil {
		return rec, err
	}
	if keepTar {
		if rec.Tar, _, err = tarBlob.Commit(); err != nil {
			return rec, err
		}
	}
	return rec, nil
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func hexDigest(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

// overlayKey is what the overlay is made of: the files, over the root
// of the role.
type overlayKey struct {
	Role  string   // the role stage's key
	Index string   // the role's root filesystem index, which the files are laid over
	Files []string // one line per file: path, type, mode, owner, link, content digest
	Epoch int64
	// Lower is the role's record; FileList the files Files sums up.
	Lower    layerRecord  `key:"-"`
	FileList []layer.File `key:"-"`
	Plan     *plan.Plan   `key:"-"`
}

func (b *Builder) overlayStage() stage[overlayKey, layerRecord] {
	return stage[overlayKey, layerRecord]{name: "overlay", version: overlayStage, blobs: layerBlobs, cached: layerID, run: b.runOverlay}
}

// overlay writes imgforge's own files: the plan's files, the role
// description the agent reads, the cloud-init drop-ins and the service
// links.
func (b *Builder) overlay(ctx context.Context, p *plan.Plan, role layerRecord, roleKey string) (layerRecord, string, error) {
	st := b.o.Progress.Start(p.Role, "overlay")
	lower, err := b.readIndex(role.Index)
	if err != nil {
		st.Fail()
		return layerRecord{}, "", err
	}
	files, err := b.overlayFiles(p, role, lower)
	if err != nil {
		st.Fail()
		return layerRecord{}, "", err
	}
	var sums []string
	for _, f := range files {
		sum := sha256.Sum256(f.Data)
		sums = append(sums, fmt.Sprintf("%s %c %o %d %d %s %x", f.Path, f.Type, f.Mode, f.UID, f.GID, f.Linkname, sum))
	}
	k := overlayKey{Role: roleKey, Index: role.Index, Files: sums, Epoch: p.SourceDateEpoch, Lower: role, FileList: files, Plan: p}
	key := cache.KeyOf(overlayStage, k)
	rec, err := runStarted(ctx, b, st, b.overlayStage(), key, k)
	return rec, key, err
}

func (b *Builder) runOverlay(ctx context.Context, _ *Stage, k overlayKey, _ string) (layerRecord, string, error) {
	role := k.Lower
	lower, err := b.readIndex(role.Index)
	if err != nil {
		return layerRecord{}, "", err
	}
	rec, err := b.writeLayer(ctx, false, func(w io.Writer) error {
		_, err := layer.WriteFiles(w, k.FileList, lower, layer.Normalizer{Epoch: time.Unix(k.Epoch, 0).UTC()})
		return err
	})
	if err != nil {
		return rec, "", err
	}
	rec.Index, rec.Status, rec.Passwd, rec.Group, rec.Docs = role.Index, role.Status, role.Passwd, role.Group, role.Docs
	return rec, fmt.Sprintf("%s, %d files", short(rec.Blob), len(k.FileList)), nil
}

// roleJSON is the role.json of the image of p.
func roleJSON(p *plan.Plan) ([]byte, error) {
	return p.RoleInfo().Marshal()
}

func (b *Builder) overlayFiles(p *plan.Plan, role layerRecord, lower layer.Index) ([]layer.File, error) {
	passwd, err := b.o.Cache.ReadBlob(role.Passwd)
	if err != nil {
		return nil, err
	}
	group, err := b.o.Cache.ReadBlob(role.Group)
	if err != nil {
		return nil, err
	}
	users, groups := parseIDs(passwd), parseIDs(group)
	var files []layer.File
	for _, f := range p.Files {
		uid, err := resolveID(f.Owner, users, "user", f.Source)
		if err != nil {
			return nil, err
		}
		gid, err := resolveID(f.Group, groups, "group", f.Source)
		if err != nil {
			return nil, err
		}
		lf := layer.File{Path: strings.TrimPrefix(f.Path, "/"), Mode: int64(f.Mode), UID: uid, GID: gid}
		if f.Type == "dir" {
			lf.Type = tar.TypeDir
		} else {
			lf.Type = tar.TypeReg
			lf.Data = p.Blobs[f.Digest]
		}
		files = append(files, lf)
	}
	infoJSON, err := roleJSON(p)
	if err != nil {
		return nil, err
	}
	files = append(files, layer.File{Path: strings.TrimPrefix(imagemeta.RolePath, "/"), Type: tar.TypeReg, Mode: 0o644, Data: infoJSON})
	dropins, err := cloudinitFiles()
	if err != nil {
		return nil, err
	}
	files = append(files, dropins...)

	have := map[string]bool{}
	for _, f := range files {
		have[f.Path] = true
	}
	for _, svc := range p.Services {
		unit := svc
		if !hasUnitSuffix(unit) {
			unit += ".service"
		}
		target := ""
		for _, dir := range []string{"etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system"} {
			if _, ok := lower[dir+"/"+unit]; ok || have[dir+"/"+unit] {
				target = "/" + dir + "/" + unit
				break
			}
		}
		if target == "" {
			return nil, fmt.Errorf("role %s: service %q: no unit %s in the image (looked in /etc/systemd/system and /lib/systemd/system); is its package in the role's packages?", p.Role, svc, unit)
		}
		link := "etc/systemd/system/multi-user.target.wants/" + unit
		if _, enabled := lower[link]; enabled {
			continue // the package enabled it already
		}
		files = append(files, layer.File{Path: link, Type: tar.TypeSymlink, Mode: 0o777, Linkname: target})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

func hasUnitSuffix(u string) bool {
	for _, s := range []string{".service", ".socket", ".timer", ".target", ".path", ".mount"} {
		if strings.HasSuffix(u, s) {
			return true
		}
	}
	return false
}

func cloudinitFiles() ([]layer.File, error) {
	entries, err := cloudinit.FS.ReadDir(".")
	if err != nil {
		return nil, err
	}
	var out []layer.File
	for _, e := range entries {
		data, err := cloudinit.FS.ReadFile(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, layer.File{Path: path.Join("etc/cloud/cloud.cfg.d", e.Name()), Type: tar.TypeReg, Mode: 0o644, Data: data})
	}
	// cloud-init runs at every boot, enabled here rather than by its
	// generator: systemd 252 kills generators that together run over 90 s,
	// which a loaded TCG guest reaches, and a killed cloud-init-generator
	// (ds-identify, a long shell script) leaves cloud-init disabled and
	// the node unconfigured. cloud-init-local, which has no such limit,
	// then finds the datasource itself.
	out = append(out,
		layer.File{Path: "etc/systemd/system-generators/cloud-init-generator", Type: tar.TypeSymlink, Mode: 0o777, Linkname: "/dev/null"},
		layer.File{Path: "etc/systemd/system/multi-user.target.wants/cloud-init.target", Type: tar.TypeSymlink, Mode: 0o777, Linkname: "/usr/lib/systemd/system/cloud-init.target"},
		// The config stage's modules run in the other stages
		// (90-imgforge.cfg): its process, cloud-init loaded once more,
		// is left out.
		layer.File{Path: "etc/systemd/system/cloud-config.service", Type: tar.TypeSymlink, Mode: 0o777, Linkname: "/dev/null"},
	)
	return out, nil
}

// parseIDs reads name -> id from /etc/passwd or /etc/group content.
func parseIDs(data []byte) map[string]int {
	out := map[string]int{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 3 {
			continue
		}
		if id, err := strconv.Atoi(f[2]); err == nil {
			out[f[0]] = id
		}
	}
	return out
}

func resolveID(name string, ids map[string]int, kind, source string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, nil
	}
	id, ok := ids[name]
	if !ok {
		var known []string
		for k := range ids {
			known = append(known, k)
		}
		sort.Strings(known)
		return 0, fmt.Errorf("%s: %s %q does not exist in the image; known: %s", source, kind, name, strings.Join(known, ", "))
	}
	return id, nil
}

package build

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

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
	baseStage    = "base-v1"
	roleStage    = "role-v1"
	overlayStage = "overlay-v1"
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
}

type builtLayer struct {
	Kind   string
	Record layerRecord
}

var keepFiles = []string{"etc/passwd", "etc/group", "var/lib/dpkg/status"}

// lookup finds a stage record and checks the blobs it names; a record whose
// blobs are missing or corrupt is dropped, so the stage is rebuilt.
func (b *Builder) lookup(stage, key string, rec *layerRecord, verifyTar bool) bool {
	if !b.o.Cache.Get(stage, key, rec) {
		return false
	}
	check := []string{rec.Index, rec.Status, rec.Passwd, rec.Group}
	if rec.Blob != "" {
		check = append(check, rec.Blob)
	}
	if verifyTar && rec.Tar != "" {
		check = append(check, rec.Tar)
	}
	for _, d := range check {
		if err := b.verify(d); err != nil {
			b.o.Progress.Note(fmt.Sprintf("cache: %s entry %s is damaged (%v); rebuilding it", stage, short(key), err))
			_ = b.o.Cache.Delete(stage, key)
			*rec = layerRecord{}
			return false
		}
	}
	if rec.Lists != "" {
		if fi, err := os.Stat(filepath.Join(b.o.Cache.Dir(), "lists", rec.Lists)); err != nil || !fi.IsDir() {
			b.o.Progress.Note(fmt.Sprintf("cache: %s entry %s lost its apt lists; rebuilding it", stage, short(key)))
			_ = b.o.Cache.Delete(stage, key)
			return false
		}
	}
	return true
}

func short(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

func (b *Builder) baseKey(ctx context.Context, p *plan.Plan) (string, error) {
	rel, err := b.releaseDigests(ctx, p.Distribution.Sources)
	if err != nil {
		return "", err
	}
	return cache.Key(baseStage, b.mmdVersion, p.Distribution.Suite, p.Architecture, p.Distribution.Sources, rel,
		p.BasePackages, p.Exclude, p.Include, p.SourceDateEpoch, b.o.Rootless), nil
}

func (b *Builder) base(ctx context.Context, p *plan.Plan) (layerRecord, string, error) {
	key, err := b.baseKey(ctx, p)
	if err != nil {
		return layerRecord{}, "", err
	}
	st := b.o.Progress.Start(p.Role, "base")
	var rec layerRecord
	if b.lookup(baseStage, key, &rec, false) {
		st.Done("cached " + short(rec.Blob))
		return rec, key, nil
	}
	st.Update(fmt.Sprintf("mmdebstrap %s, %d packages", p.Distribution.Suite, len(p.BasePackages)))
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
		Suite: p.Distribution.Suite, Architecture: p.Architecture, Sources: p.Distribution.Sources,
		Packages: p.BasePackages, Exclude: p.Exclude, Include: p.Include, Epoch: p.SourceDateEpoch,
		DebCache: b.o.Cache.DebDir(), ListsOut: lists, Output: filepath.Join(tmp, "root.tar"),
		TempDir: tmp, Rootless: b.o.Rootless, Log: st.LogWriter(b.o.Log), Command: b.o.Mmdebstrap,
	}
	if err := bs.Run(ctx); err != nil {
		st.Fail()
		return rec, "", packageError(p, err)
	}
	st.Update("compressing")
	f, err := os.Open(bs.Output)
	if err != nil {
		return rec, "", err
	}
	defer f.Close()
	var res *layer.Result
	rec, err = b.writeLayer(true, func(w io.Writer) error {
		var err error
		res, err = layer.Normalize(w, f, layer.Normalizer{Epoch: epoch(p)}, layer.DropDeviceNodes, keepFiles)
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
	if err := b.o.Cache.Put(baseStage, key, rec); err != nil {
		return rec, "", err
	}
	st.Done(fmt.Sprintf("%s, %s compressed", short(rec.Blob), units.Bytes(rec.Size)))
	return rec, key, nil
}

func (b *Builder) role(ctx context.Context, p *plan.Plan, base layerRecord, baseKey string) (layerRecord, string, error) {
	key := cache.Key(roleStage, baseKey, p.Packages, p.Prune, p.Exclude, p.Include)
	st := b.o.Progress.Start(p.Role, "packages")
	if len(p.Packages) == 0 && len(p.Prune) == 0 {
		st.Done("none beyond the base")
		return layerRecord{Index: base.Index, Status: base.Status, Passwd: base.Passwd, Group: base.Group}, key, nil
	}
	var rec layerRecord
	if b.lookup(roleStage, key, &rec, false) {
		st.Done("cached " + short(rec.Blob))
		return rec, key, nil
	}
	if err := b.verify(base.Tar); err != nil {
		st.Fail()
		_ = b.o.Cache.Delete(baseStage, baseKey)
		return rec, "", fmt.Errorf("the cached base is damaged (%w); run the build again to rebuild it", err)
	}
	st.Update(fmt.Sprintf("installing %s", strings.Join(p.Packages, " ")))
	tmp, err := b.o.Cache.TempDir("role-")
	if err != nil {
		return rec, "", err
	}
	defer removeAllQuiet(tmp)
	bs := &debian.Bootstrap{
		Suite: p.Distribution.Suite, Architecture: p.Architecture, Sources: p.Distribution.Sources,
		Packages: p.Packages, Exclude: p.Exclude, Include: p.Include, Epoch: p.SourceDateEpoch,
		On: b.o.Cache.BlobPath(base.Tar), ListsIn: filepath.Join(b.o.Cache.Dir(), "lists", base.Lists),
		DebCache: b.o.Cache.DebDir(), Output: filepath.Join(tmp, "root.tar"),
		TempDir: tmp, Rootless: b.o.Rootless, Log: st.LogWriter(b.o.Log), Command: b.o.Mmdebstrap,
	}
	if err := bs.Run(ctx); err != nil {
		st.Fail()
		return rec, "", packageError(p, err)
	}
	st.Update("diffing against the base")
	lower, err := b.readIndex(base.Index)
	if err != nil {
		return rec, "", err
	}
	// The role's prune globs are applied here, to the names in the tar:
	// no shell, and no symlink followed.
	prune, err := layer.PruneFilter(p.Prune)
	if err != nil {
		return rec, "", err
	}
	var res *layer.Result
	rec, err = b.writeLayer(false, func(w io.Writer) error {
		var err error
		res, err = layer.Diff(w, lower, bs.Output, layer.Normalizer{Epoch: epoch(p)}, layer.AllOf(layer.DropDeviceNodes, prune), keepFiles)
		return err
	})
	if err != nil {
		return rec, "", err
	}
	if err := b.storeRootInfo(&rec, res); err != nil {
		return rec, "", err
	}
	if err := b.o.Cache.Put(roleStage, key, rec); err != nil {
		return rec, "", err
	}
	st.Done(fmt.Sprintf("%s, %s compressed", short(rec.Blob), units.Bytes(rec.Size)))
	return rec, key, nil
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
	return nil
}

// writeLayer runs write with a writer whose bytes become a gzip layer blob
// (and, with keepTar, an uncompressed tar blob too).
func (b *Builder) writeLayer(keepTar bool, write func(io.Writer) error) (layerRecord, error) {
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
	if err := write(io.MultiWriter(ws...)); err != nil {
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

// overlay writes imgforge's own files: the plan's files, the role
// description the agent reads, the cloud-init drop-ins and the service
// links.
func (b *Builder) overlay(ctx context.Context, p *plan.Plan, role layerRecord, roleKey string) (layerRecord, string, error) {
	st := b.o.Progress.Start(p.Role, "overlay")
	lower, err := b.readIndex(role.Index)
	if err != nil {
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
	key := cache.Key(overlayStage, roleKey, role.Index, sums, p.SourceDateEpoch)
	var rec layerRecord
	if b.lookup(overlayStage, key, &rec, false) {
		st.Done("cached " + short(rec.Blob))
		return rec, key, nil
	}
	rec, err = b.writeLayer(false, func(w io.Writer) error {
		_, err := layer.WriteFiles(w, files, lower, layer.Normalizer{Epoch: epoch(p)})
		return err
	})
	if err != nil {
		st.Fail()
		return rec, "", err
	}
	rec.Index, rec.Status, rec.Passwd, rec.Group = role.Index, role.Status, role.Passwd, role.Group
	if err := b.o.Cache.Put(overlayStage, key, rec); err != nil {
		return rec, "", err
	}
	st.Done(fmt.Sprintf("%s, %d files", short(rec.Blob), len(files)))
	return rec, key, nil
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

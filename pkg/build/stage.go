package build

import (
	"context"
	"errors"
	"fmt"

	"github.com/imgforge/imgforge/pkg/cache"
)

// A stage is one cached step of a build: the Debian base, the role's
// packages, the overlay, the initramfs, the verified root. K is its typed
// key: everything the stage reads. Its exported fields are hashed in
// order by cache.KeyOf, except those tagged `key:"-"`, which the others
// determine (a lower stage's record, found by that stage's key). R is the
// record the cache keeps; it names blobs by digest.
//
// Every stage goes through runStage: look the key up, re-hash the blobs a
// hit names (dropping a damaged entry), run the stage on a miss, store
// its record.
type stage[K, R any] struct {
	// name is the stage's name in progress lines: "base", "packages".
	name string
	// version names the stage's records in the cache ("base-v1"). Bump it
	// when what the stage writes changes for the same key.
	version string
	// blobs are the blobs a record names; a hit whose blobs are missing
	// or damaged is dropped and the stage runs again.
	blobs func(R) []string
	// check, when set, tells whether a hit still has what it needs
	// besides its blobs; a message says what it lost.
	check func(R) (lost string, ok bool)
	// cached says which record a hit found, after "cached ".
	cached func(R) string
	// run builds the record on a miss and says what it made.
	run func(ctx context.Context, st *Stage, k K, key string) (R, string, error)
}

// runStage finds s's record under key k in the cache, or runs s and
// stores what it made. It reports the stage's progress under role and
// returns the record and its cache key.
func runStage[K, R any](ctx context.Context, b *Builder, role string, s stage[K, R], k K) (R, string, error) {
	key := cache.KeyOf(s.version, k)
	st := b.o.Progress.Start(role, s.name)
	rec, err := runStarted(ctx, b, st, s, key, k)
	return rec, key, err
}

// runStarted is runStage for a stage whose progress line began already
// (the overlay reports the files it could not make under its own name).
func runStarted[K, R any](ctx context.Context, b *Builder, st *Stage, s stage[K, R], key string, k K) (R, error) {
	var rec R
	if !b.o.NoCache && b.o.Cache.Get(s.version, key, &rec) {
		ok, err := usable(ctx, b, s, key, rec)
		if err != nil {
			st.Fail()
			return *new(R), err
		}
		if ok {
			st.Done("cached " + s.cached(rec))
			b.noteUsed(st.role, cache.StageRef{Stage: s.version, Key: key})
			return rec, nil
		}
	}
	if err := ctx.Err(); err != nil {
		st.Fail()
		return *new(R), err
	}
	rec, msg, err := s.run(ctx, st, k, key)
	if err != nil {
		st.Fail()
		return rec, err
	}
	if err := b.o.Cache.Put(s.version, key, rec); err != nil {
		st.Fail()
		return rec, err
	}
	b.noteUsed(st.role, cache.StageRef{Stage: s.version, Key: key})
	st.Done(msg)
	return rec, nil
}

// usable re-hashes the blobs of a cached record (once per Builder) and
// runs the stage's own check; a record that fails is deleted. The error
// is ctx's, when it ended during the check.
func usable[K, R any](ctx context.Context, b *Builder, s stage[K, R], key string, rec R) (bool, error) {
	for _, d := range s.blobs(rec) {
		if err := b.verify(ctx, d); err != nil {
			if !errors.Is(err, cache.ErrCorrupt) {
				return false, err
			}
			b.o.Progress.Note(fmt.Sprintf("cache: %s entry %s is damaged (%v); rebuilding it", s.version, short(key), err))
			_ = b.o.Cache.Delete(s.version, key)
			return false, nil
		}
	}
	if s.check != nil {
		if lost, ok := s.check(rec); !ok {
			b.o.Progress.Note(fmt.Sprintf("cache: %s entry %s lost its %s; rebuilding it", s.version, short(key), lost))
			_ = b.o.Cache.Delete(s.version, key)
			return false, nil
		}
	}
	return true, nil
}

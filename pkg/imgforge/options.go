package imgforge

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"strconv"

	"github.com/imgforge/imgforge/pkg/plan"
	"github.com/imgforge/imgforge/pkg/spec"
)

// Settings are what a front end (the CLI, the Packer plugin) was given for
// a plan. Both resolve them with ResolveOptions, so that the same settings
// give the same plan, whichever front end took them.
type Settings struct {
	Set             map[string]string // role options: name -> choice
	SourceDateEpoch int64             // 0: $SOURCE_DATE_EPOCH, else the image definition's
	Mirror          string            // "": the image definition's, else the host's
	AgentPath       string            // "": found by FindAgent
}

// The settings a SettingError can name.
const (
	SettingMirror          = "mirror"
	SettingSourceDateEpoch = "source_date_epoch"
	SettingAgent           = "agent"
)

// SettingError is a setting that ResolveOptions refused. Setting is one
// of the Setting constants: a front end names it the way its users wrote
// it (a flag, a field of a template).
type SettingError struct {
	Setting string
	Err     error
}

func (e *SettingError) Error() string { return e.Setting + ": " + e.Err.Error() }
func (e *SettingError) Unwrap() error { return e.Err }

// ResolveOptions turns settings into plan options: it checks the mirror,
// takes SOURCE_DATE_EPOCH from getenv when the settings give no epoch,
// reads the host's Debian mirrors from host (the root file system outside
// tests), and reads the agent binary. getenv is os.Getenv outside tests.
// A refused setting is a *SettingError.
func ResolveOptions(s Settings, getenv func(string) string, host fs.FS) (plan.Options, error) {
	o := plan.Options{Mirror: s.Mirror, SourceDateEpoch: s.SourceDateEpoch, HostMirrors: plan.DetectMirrors(host)}
	if s.Mirror != "" {
		if err := spec.CheckMirror(s.Mirror); err != nil {
			return o, &SettingError{SettingMirror, err}
		}
	}
	switch {
	case s.SourceDateEpoch < 0:
		return o, &SettingError{SettingSourceDateEpoch, fmt.Errorf("%d is not a positive Unix time", s.SourceDateEpoch)}
	case s.SourceDateEpoch == 0:
		if v := getenv("SOURCE_DATE_EPOCH"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return o, &SettingError{SettingSourceDateEpoch, fmt.Errorf("SOURCE_DATE_EPOCH=%q in the environment is not a positive Unix time", v)}
			}
			o.SourceDateEpoch = n
		}
	}
	if len(s.Set) > 0 {
		o.Set = maps.Clone(s.Set)
	}
	env := getenv
	if s.AgentPath != "" {
		env = func(k string) string {
			if k == AgentEnv {
				return s.AgentPath
			}
			return getenv(k)
		}
	}
	var err error
	if o.AgentSource, o.Agent, err = FindAgent(env); err != nil {
		return o, &SettingError{SettingAgent, err}
	}
	return o, nil
}

// AsSettingError reports whether err holds a *SettingError, and which.
func AsSettingError(err error) (*SettingError, bool) {
	var se *SettingError
	ok := errors.As(err, &se)
	return se, ok
}

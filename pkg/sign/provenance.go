package sign

import "encoding/json"

// BuildType is the SLSA build type of imgforge's provenance: what
// externalParameters and internalParameters mean.
const BuildType = "https://github.com/imgforge/imgforge/blob/main/docs/provenance.md#v1"

// BuilderID names imgforge as the SLSA builder.
const BuilderID = "https://github.com/imgforge/imgforge"

// Provenance is an SLSA v1 provenance predicate.
type Provenance struct {
	BuildDefinition BuildDefinition `json:"buildDefinition"`
	RunDetails      RunDetails      `json:"runDetails"`
}

// BuildDefinition is the inputs of a build.
type BuildDefinition struct {
	BuildType            string               `json:"buildType"`
	ExternalParameters   any                  `json:"externalParameters"`
	InternalParameters   any                  `json:"internalParameters,omitempty"`
	ResolvedDependencies []ResourceDescriptor `json:"resolvedDependencies,omitempty"`
}

// ResourceDescriptor is an input artefact: a URI or a name, and digests.
type ResourceDescriptor struct {
	URI    string            `json:"uri,omitempty"`
	Name   string            `json:"name,omitempty"`
	Digest map[string]string `json:"digest"`
}

// RunDetails is who ran the build.
type RunDetails struct {
	Builder  Builder        `json:"builder"`
	Metadata map[string]any `json:"metadata,omitempty"`
}

// Builder is the SLSA builder and the versions of its parts.
type Builder struct {
	ID      string            `json:"id"`
	Version map[string]string `json:"version,omitempty"`
}

// Marshal is the predicate's JSON.
func (p Provenance) Marshal() ([]byte, error) { return json.Marshal(p) }

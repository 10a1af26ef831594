package config

import (
	"bytes"
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/imgforge/imgforge/pkg/spec"
)

// Section is the top-level key of the cloud-config that holds the
// agent's settings. cloud-init ignores keys it does not know.
const Section = "imgforge"

// ErrNoSection is returned (wrapped) when the cloud-config has no
// imgforge: section.
var ErrNoSection = errors.New("no imgforge: section")

// Parse reads the imgforge: section of a cloud-config document (the text
// after "#cloud-config"), decodes it strictly and validates every value
// that does not depend on the machine. file names the document in errors.
// The node's identity may still be incomplete: Complete fills it.
// User-data holds secrets, so no error quotes a value from it: errors
// name the field and what is accepted.
func Parse(file string, data []byte) (*Config, spec.Source, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, spec.Source{}, spec.YAMLSyntaxError(file, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, spec.Source{}, fmt.Errorf("%s: %w: the cloud-config is not a mapping", file, ErrNoSection)
	}
	top := doc.Content[0]
	var section *yaml.Node
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == Section {
			if section != nil {
				k := top.Content[i]
				return nil, spec.Source{}, &spec.Error{File: file, Line: k.Line, Col: k.Column, Field: Section, Msg: "set twice in the same mapping"}
			}
			section = top.Content[i+1]
		}
	}
	if section == nil {
		return nil, spec.Source{}, fmt.Errorf("%s: %w in the cloud-config; see docs/agent.md", file, ErrNoSection)
	}
	var fields map[string]string
	if section.Kind == yaml.MappingNode {
		shorthandTLS(section)
		var err error
		if fields, err = foldLegacyOptions(file, section); err != nil {
			return nil, spec.Source{}, err
		}
	}
	var c Config
	src, err := spec.DecodeNodeQuiet(file, section, &c, Section)
	if err != nil {
		return nil, spec.Source{}, err
	}
	c.optionFields = fields
	if err := c.validate(src); err != nil {
		return nil, spec.Source{}, err
	}
	return &c, src, nil
}

// shorthandTLS rewrites `tls: self-signed` into `tls: {self_signed: true}`
// so the strict decoder sees one shape.
func shorthandTLS(section *yaml.Node) {
	for i := 0; i+1 < len(section.Content); i += 2 {
		k, v := section.Content[i], section.Content[i+1]
		if k.Value == "tls" && v.Kind == yaml.ScalarNode && v.Value == "self-signed" {
			*v = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: v.Line, Column: v.Column, Content: []*yaml.Node{
				{Kind: yaml.ScalarNode, Tag: "!!str", Value: "self_signed", Line: v.Line, Column: v.Column},
				{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true", Line: v.Line, Column: v.Column},
			}}
		}
	}
}

// Marshal writes c as the imgforge: section of a cloud-config (the key
// and its mapping), the inverse of Parse for what user-data carries.
func Marshal(c *Config) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(map[string]*Config{Section: c}); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

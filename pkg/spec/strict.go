package spec

import (
	"reflect"

	"gopkg.in/yaml.v3"
)

// DecodeStrict decodes data, the content of file, into v (a pointer to a
// struct) with the same strict rules as role and image definitions:
// unknown fields, wrong kinds, aliases and keys set twice are *Error values
// naming the file, line, column and field. The returned Source locates
// every field for later validation errors. Other packages reading
// operator-written YAML (cluster files, boot data) use it so that their
// errors read alike.
func DecodeStrict(file string, data []byte, v any) (Source, error) {
	pos, err := decodeStrict(file, data, v)
	if err != nil {
		return Source{}, err
	}
	return Source{File: file, Pos: pos}, nil
}

// DecodeNode decodes n, a node of a YAML document read from file, strictly
// into v (a pointer to a struct). Field paths in errors and in the
// returned Source start with prefix (for example "imgforge"), so a section
// of a larger document is reported where it was written.
func DecodeNode(file string, n *yaml.Node, v any, prefix string) (Source, error) {
	d := &decoder{file: file, pos: map[string]Pos{}}
	if err := d.decode(n, reflect.ValueOf(v).Elem(), prefix); err != nil {
		return Source{}, err
	}
	return Source{File: file, Pos: d.pos}, nil
}

// DecodeNodeQuiet is DecodeNode for documents that hold secrets (a
// node's user-data): its errors name the file, line, column and field and
// the kind of a wrong value, never the value itself.
func DecodeNodeQuiet(file string, n *yaml.Node, v any, prefix string) (Source, error) {
	d := &decoder{file: file, pos: map[string]Pos{}, quiet: true}
	if err := d.decode(n, reflect.ValueOf(v).Elem(), prefix); err != nil {
		return Source{}, err
	}
	return Source{File: file, Pos: d.pos}, nil
}

// YAMLSyntaxError turns an error of yaml.v3 about data read from file
// into an *Error with the line it names.
func YAMLSyntaxError(file string, err error) error { return yamlSyntaxError(file, err) }

package spec

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is a problem in a definition file, located by file, line and field.
type Error struct {
	File  string
	Line  int
	Col   int
	Field string // dotted path such as "packages[2]" or "health.port"; may be empty
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, ":%d", e.Col)
		}
	}
	b.WriteString(": ")
	if e.Field != "" {
		fmt.Fprintf(&b, "field %q: ", e.Field)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Pos is where a value was written in a definition file.
type Pos struct {
	File  string
	Line  int
	Col   int
	Field string
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col) }

// decoder decodes YAML into Go structs strictly: unknown fields, wrong kinds
// and duplicate keys are errors that name the file, line and field.
type decoder struct {
	file  string
	pos   map[string]Pos // field path -> position, for later validation errors
	quiet bool           // errors never quote a value of the document (it may hold secrets)
}

// decodeStrict parses data as a single YAML document into v (a pointer to a
// struct) and returns the positions of every field it set.
func decodeStrict(file string, data []byte, v any) (map[string]Pos, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlSyntaxError(file, err)
	}
	d := &decoder{file: file, pos: map[string]Pos{}}
	if doc.Kind == 0 {
		return nil, &Error{File: file, Msg: "the file is empty; a mapping of fields is expected"}
	}
	n := &doc
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil, &Error{File: file, Msg: "the file is empty; a mapping of fields is expected"}
		}
		n = n.Content[0]
	}
	if err := d.decode(n, reflect.ValueOf(v).Elem(), ""); err != nil {
		return nil, err
	}
	return d.pos, nil
}

// yamlSyntaxError turns yaml.v3's "yaml: line N: msg" into an Error.
func yamlSyntaxError(file string, err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil {
		if i := strings.Index(msg, ":"); i >= 0 {
			msg = strings.TrimSpace(msg[i+1:])
		}
	}
	return &Error{File: file, Line: line, Msg: "invalid YAML: " + msg}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func (d *decoder) errAt(n *yaml.Node, field, format string, args ...any) error {
	return &Error{File: d.file, Line: n.Line, Col: n.Column, Field: field, Msg: fmt.Sprintf(format, args...)}
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// kindName names what n is: its kind, or the scalar itself quoted; a
// quiet decoder says only what kind of scalar it is.
func (d *decoder) kindName(n *yaml.Node) string {
	if d.quiet && n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return scalarKind(n)
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	default:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
}

// scalarKind says what kind of scalar n is, without its value.
func scalarKind(n *yaml.Node) string {
	switch n.ShortTag() {
	case "!!int":
		return "a whole number"
	case "!!float":
		return "a number"
	case "!!bool":
		return "true or false"
	case "!!timestamp":
		return "a date"
	case "!!binary":
		return "binary data"
	case "!!str":
		return "a string"
	}
	return "a scalar"
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.AliasNode {
		return d.errAt(n, path, "aliases are not supported; write the value out")
	}
	d.pos[path] = Pos{File: d.file, Line: n.Line, Col: n.Column, Field: path}
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		if err := n.Decode(v.Addr().Interface()); err != nil {
			if d.quiet {
				return d.errAt(n, path, "%s is not accepted here (the value is not shown)", d.kindName(n))
			}
			return d.errAt(n, path, "%s", cleanYAMLErr(err))
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			v.Set(reflect.Zero(v.Type()))
			return nil
		}
		p := reflect.New(v.Type().Elem())
		if err := d.decode(n, p.Elem(), path); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return d.errAt(n, path, "expected a mapping with fields %s, got %s", strings.Join(fieldNames(v.Type()), ", "), d.kindName(n))
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if seen[k.Value] {
				return d.errAt(k, join(path, k.Value), "set twice in the same mapping")
			}
			seen[k.Value] = true
			idx, ok := fieldIndex(v.Type(), k.Value)
			if !ok {
				where := "here"
				if path != "" {
					where = "in " + path
				}
				return d.errAt(k, join(path, k.Value), "unknown field %s; accepted: %s", where, strings.Join(fieldNames(v.Type()), ", "))
			}
			if err := d.decode(val, v.Field(idx), join(path, k.Value)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			v.Set(reflect.Zero(v.Type()))
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return d.errAt(n, path, "expected a list, got %s", d.kindName(n))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Map:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil
		}
		if n.Kind != yaml.MappingNode {
			return d.errAt(n, path, "expected a mapping, got %s", d.kindName(n))
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := reflect.New(v.Type().Key()).Elem()
			if err := d.decode(k, key, path); err != nil {
				return err
			}
			if m.MapIndex(key).IsValid() {
				return d.errAt(k, join(path, k.Value), "set twice in the same mapping")
			}
			elem := reflect.New(v.Type().Elem()).Elem()
			if err := d.decode(val, elem, join(path, k.Value)); err != nil {
				return err
			}
			m.SetMapIndex(key, elem)
		}
		v.Set(m)
		return nil
	default:
		if n.Kind != yaml.ScalarNode {
			return d.errAt(n, path, "expected %s, got %s", scalarName(v.Kind()), d.kindName(n))
		}
		if v.Kind() == reflect.String && n.Tag != "!!str" && n.Tag != "!!null" {
			// Accept plain scalars such as 8.2 or yes as strings, but keep their text.
			v.SetString(n.Value)
			return nil
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			if d.quiet {
				if want := scalarName(v.Kind()); scalarKind(n) != want {
					return d.errAt(n, path, "expected %s, got %s (the value is not shown)", want, scalarKind(n))
				}
				return d.errAt(n, path, "expected %s%s (the value is not shown)", scalarName(v.Kind()), rangeOf(v))
			}
			return d.errAt(n, path, "expected %s, got %q", scalarName(v.Kind()), n.Value)
		}
		return nil
	}
}

func cleanYAMLErr(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return te.Errors[0]
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

// rangeOf says which whole numbers v holds, such as " from 0 to 65535".
func rangeOf(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits := v.Type().Bits()
		return fmt.Sprintf(" from %d to %d", int64(-1)<<(bits-1), int64(1)<<(bits-1)-1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf(" from 0 to %d", uint64(1)<<v.Type().Bits()-1)
	}
	return ""
}

func scalarName(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	default:
		return "a string"
	}
}

func yamlName(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

func fieldIndex(t reflect.Type, name string) (int, bool) {
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.IsExported() && yamlName(f) == name {
			return i, true
		}
	}
	return 0, false
}

func fieldNames(t reflect.Type) []string {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.IsExported() {
			if n := yamlName(f); n != "" {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names
}

// Decode parses data, the YAML file named file, strictly into v (a
// pointer to a struct with yaml tags), as the role and image definitions
// are read: an unknown field, a wrong kind or a duplicate key is an *Error
// naming the file, line and field. It returns where each field was
// written ("machines[2].mac"), for errors found later.
func Decode(file string, data []byte, v any) (map[string]Pos, error) {
	return decodeStrict(file, data, v)
}

package imagemeta

import (
	"debug/pe"
	"fmt"
	"io"
)

// UKISection returns the contents of section name (such as .cmdline) of
// the unified kernel image r, without the zero padding to its file
// alignment. The builder's verify and the agent's update both read a
// UKI's command line with it.
func UKISection(r io.ReaderAt, name string) ([]byte, error) {
	f, err := pe.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("not a PE image: %w", err)
	}
	defer f.Close()
	s := f.Section(name)
	if s == nil {
		return nil, fmt.Errorf("the UKI has no %s section", name)
	}
	d, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("reading the UKI's %s section: %w", name, err)
	}
	if s.VirtualSize > 0 && int(s.VirtualSize) < len(d) {
		d = d[:s.VirtualSize]
	}
	return d, nil
}

package render

// primary is the db member marked primary.
func (in *Input) primary() (Node, bool) {
	for _, n := range in.members(RoleDB, true) {
		if n.Primary {
			return n, true
		}
	}
	return Node{}, false
}

func (d *DB) database() string {
	if d.Name == "" {
		return "imgforge"
	}
	return d.Name
}

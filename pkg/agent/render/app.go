package render

// database is the application's database name: "imgforge" when none is given.
func (d *DB) database() string {
	if d.Name == "" {
		return "imgforge"
	}
	return d.Name
}

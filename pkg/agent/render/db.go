package render

import "fmt"

// Where the db role's rendered files live on the node.
const (
	DBNodeConfigPath = "/etc/mysql/mariadb.conf.d/91-imgforge-node.cnf"
	PrimarySQLPath   = "/etc/imgforge/db/primary.sql"
	ReplicaSQLPath   = "/etc/imgforge/db/replica.sql"
	// SchemaPath is the application's schema the primary loads (baked
	// into the image by roles/db.yaml).
	SchemaPath = "/usr/share/imgforge/db/schema.sql"
)

// dbPort is MariaDB's port.
const dbPort = 3306

const (
	mib = 1 << 20
	gib = 1 << 30
)

// Memory holds the MariaDB settings derived from the machine's RAM.
type Memory struct {
	BufferPoolMiB     uint64 // innodb_buffer_pool_size
	LogFileMiB        uint64 // innodb_log_file_size
	MaxConnections    uint64 // max_connections
	TmpTableMiB       uint64 // tmp_table_size and max_heap_table_size
	TableOpenCache    uint64 // table_open_cache
	ThreadCacheSize   uint64 // thread_cache_size
	InstanceMemoryMiB uint64 // the RAM they were derived from
}

// MemorySettings sizes MariaDB for a machine with ram bytes that runs
// nothing else of weight:
//
//   - the buffer pool takes 50% of RAM below 2 GiB and 55% from there, at
//     most RAM - 1 GiB (what the OS, the connections and the page cache
//     keep), at least 128 MiB, in 128 MiB steps (the pool's chunk size);
//   - the redo log is a quarter of the pool, 96 MiB to 4 GiB;
//   - max_connections is one per 10 MiB of RAM, 50 to 4000;
//   - in-memory temporary tables get RAM/64, 16 to 256 MiB.
func MemorySettings(ram uint64) Memory {
	pool := ram / 2
	if ram >= 2*gib {
		pool = min(ram*55/100, ram-gib)
	}
	pool = max(pool/(128*mib)*(128*mib), 128*mib)
	return Memory{
		BufferPoolMiB:     pool / mib,
		LogFileMiB:        clamp(pool/4, 96*mib, 4*gib) / mib,
		MaxConnections:    clamp(ram/(10*mib), 50, 4000),
		TmpTableMiB:       clamp(ram/64, 16*mib, 256*mib) / mib,
		TableOpenCache:    clamp(ram/(4*mib), 400, 4000),
		ThreadCacheSize:   clamp(ram/(64*mib), 8, 100),
		InstanceMemoryMiB: ram / mib,
	}
}

func clamp(v, lo, hi uint64) uint64 { return min(max(v, lo), hi) }

type dbData struct {
	Self     string
	ServerID uint32
	Replica  bool
	Memory   Memory

	// primary.sql
	Database               string
	AppUser, AppPassword   string
	ReplUser, ReplPassword string
	Schema                 string
	PrimaryHost            string
	PrimaryPort            int
	PrimaryName            string
}

// db renders the node's MariaDB settings (server_id, memory, read_only on
// a replica) and the SQL step of its mode: on the primary, the accounts
// and the schema; on a replica, CHANGE MASTER TO the primary.
func (r *Renderer) db(c *Config, in *Input) error {
	replica := in.Options["mode"] == "replica"
	d := dbData{
		Self: in.Self.Name, ServerID: serverID(in.Self), Replica: replica, Memory: MemorySettings(in.MemoryBytes),
		Database: in.DB.database(), AppUser: in.DB.User, AppPassword: in.DB.Password,
		ReplUser: in.DB.ReplicationUser, ReplPassword: in.DB.ReplicationPassword,
		Schema: SchemaPath, PrimaryPort: dbPort,
	}
	cnf, err := r.execute("db/node.cnf.tmpl", d)
	if err != nil {
		return err
	}
	c.Services = append(c.Services, Service{
		Name: "mariadb",
		Files: []File{{
			Path: DBNodeConfigPath, Mode: 0o644, Owner: "root", Group: "root", Data: cnf,
			// Reads this file alone: an unknown or malformed setting fails.
			Check: []string{"mariadbd", "--defaults-file=" + Candidate, "--user=mysql", "--help", "--verbose"},
		}},
		// mariadb.service's reload only flushes the logs: restart it.
		Then: [][]string{{"systemctl", "restart", "mariadb.service"}},
	})

	name, path := "primary.sql", PrimarySQLPath
	if replica {
		name, path = "replica.sql", ReplicaSQLPath
		primary, ok := in.primary()
		if !ok || primary.Name == in.Self.Name {
			c.Waiting = append(c.Waiting, fmt.Sprintf("%s: no db primary among the %d db members", ReplicaSQLPath, len(in.Members[RoleDB])))
			return nil
		}
		d.PrimaryHost, d.PrimaryName = primary.Address.String(), primary.Name
	}
	sql, err := r.execute("db/"+name+".tmpl", d)
	if err != nil {
		return err
	}
	c.Services = append(c.Services, Service{
		Name: "mariadb-" + name[:len(name)-len(".sql")],
		Files: []File{{
			Path: path, Mode: 0o600, Owner: "root", Group: "root", Data: sql, Sensitive: true,
		}},
		// As root over the local socket; a failure puts the old file back,
		// so the next render runs it again.
		Then: [][]string{{"mariadb", "--batch", "--execute=source " + path}},
	})
	return nil
}

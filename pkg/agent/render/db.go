package render

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

package cache

import (
	"io/fs"
	"syscall"
)

// diskSize is the space fi's file takes: its blocks (a sparse file takes
// less than its size), else its size.
func diskSize(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

package sp

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/layer"
)

func hdr(name string, typ byte, size int64) []byte {
	b := make([]byte, 512)
	copy(b[0:], name)
	copy(b[100:], fmt.Sprintf("%07o\x00", 0o644))
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], fmt.Sprintf("%011o\x00", 0))
	b[156] = typ
	copy(b[257:], "ustar\x0000")
	copy(b[148:], "        ")
	s := 0
	for _, c := range b {
		s += int(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", s))
	return b
}

func pad(b []byte) []byte {
	if n := len(b) % 512; n != 0 {
		b = append(b, make([]byte, 512-n)...)
	}
	return b
}

func rec(k, v string) string {
	size := len(k) + len(v) + 3
	size += len(fmt.Sprint(size))
	r := fmt.Sprintf("%d %s=%s\n", size, k, v)
	if len(r) != size {
		r = fmt.Sprintf("%d %s=%s\n", len(r), k, v)
	}
	return r
}

func TestSparse(t *testing.T) {
	recs := rec("GNU.sparse.size", "100000000000") + rec("GNU.sparse.numblocks", "1") + rec("GNU.sparse.offset", "99999999999") + rec("GNU.sparse.numbytes", "1")
	var b []byte
	b = append(b, hdr("PaxHeaders/x", 'x', int64(len(recs)))...)
	b = append(b, pad([]byte(recs))...)
	b = append(b, hdr("x", '0', 1)...)
	b = append(b, pad([]byte("a"))...)
	b = append(b, make([]byte, 1024)...)
	start := time.Now()
	var n countW
	res, err := layer.Normalize(&n, bytes.NewReader(b), layer.Normalizer{Epoch: time.Unix(1e9, 0)}, layer.DropDeviceNodes, nil)
	t.Log(res, err, n, time.Since(start))
}

type countW int64

func (c *countW) Write(p []byte) (int, error) { *c += countW(len(p)); return len(p), nil }
var _ = io.EOF

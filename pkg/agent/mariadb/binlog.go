package mariadb

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

var (
	binlogFile = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,255}$`)
	binlogPos  = regexp.MustCompile(`^[0-9]{1,20}$`)
	gtidRe     = regexp.MustCompile(`^([0-9]{1,10})-([0-9]{1,10})-([0-9]{1,20})$`)
)

// ParseBinlogInfo reads mariadb-backup's xtrabackup_binlog_info, one line
// "FILE<TAB>POSITION<TAB>GTID" (MariaDB's gtid_current_pos at the
// snapshot), and returns the GTID list: comma-separated DOMAIN-SERVER-SEQ
// triples such as 0-1-42 or 0-1-42,1-2-7, or "" when the primary had
// written no transaction yet. Anything else is refused: the list goes
// into an SQL statement.
func ParseBinlogInfo(b []byte) (string, error) {
	s := strings.TrimSuffix(string(b), "\n")
	if strings.ContainsAny(s, "\n\r") {
		return "", errors.New("more than one line; accepted: FILE<TAB>POSITION<TAB>GTID")
	}
	f := strings.Split(s, "\t")
	switch {
	case len(f) == 2:
		return "", errors.New("no GTID (FILE<TAB>POSITION only): the primary's MariaDB gave no gtid_current_pos")
	case len(f) != 3:
		return "", fmt.Errorf("%d tab-separated fields; accepted: FILE<TAB>POSITION<TAB>GTID", len(f))
	case !binlogFile.MatchString(f[0]):
		return "", errors.New("the first field is not a binary log file name")
	case !binlogPos.MatchString(f[1]):
		return "", errors.New("the second field is not a binary log position")
	}
	if err := ValidGTIDList(f[2]); err != nil {
		return "", err
	}
	return f[2], nil
}

// ValidGTIDList checks a GTID list: "" or comma-separated DOMAIN-SERVER-SEQ
// triples, the domain and server ids 32-bit and the sequence number 64-bit,
// at most one per domain.
func ValidGTIDList(s string) error {
	if s == "" {
		return nil
	}
	domains := map[uint64]bool{}
	for _, g := range strings.Split(s, ",") {
		m := gtidRe.FindStringSubmatch(g)
		if m == nil {
			return fmt.Errorf("the GTID field is not a GTID list; accepted: DOMAIN-SERVER-SEQ triples apart by commas, such as 0-1-42,1-2-7")
		}
		d, err1 := strconv.ParseUint(m[1], 10, 32)
		_, err2 := strconv.ParseUint(m[2], 10, 32)
		_, err3 := strconv.ParseUint(m[3], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return fmt.Errorf("a GTID's numbers are out of range (domain and server 32-bit, sequence 64-bit)")
		}
		if domains[d] {
			return fmt.Errorf("the GTID list names domain %d twice", d)
		}
		domains[d] = true
	}
	return nil
}

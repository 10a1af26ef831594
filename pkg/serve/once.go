package serve

import (
	"net"
	"sync"
	"time"
)

// Secret-bearing seed files are handed out once.
//
// A machine's user-data (and vendor-data, which is cloud-config with the
// same powers: users, passwords, write_files) carries the cluster's
// secrets: the gossip key, the journal client key, the database and
// monitoring passwords. Anyone on the provisioning network can ask for
// /seed/MAC/user-data, and MAC addresses are easy to guess, so serve
// gives each such file of each machine out once: the first GET takes it,
// a later one is refused with 410 Gone and a WARNING line in the log
// that names the MAC address and the client, so that a theft is seen
// and the stolen secrets can be rotated. meta-data (instance id, host
// name) and network-config (addresses) hold no secret and are served
// every time, and so is the built-in default seed of machines without a
// seed folder, which holds no secret either.
//
// cloud-init 22.4's NoCloudNet fetches meta-data, user-data and
// vendor-data once per boot, in the network stage
// (util.read_seeded); the later stages use its cached copy, and so does
// imgforge-agent. It asks again only when a request failed (readurl
// retries up to 10 times, a second apart), which can happen after serve
// wrote the response if the connection broke before the machine read
// it. So a client at the same address as the first may fetch the file
// again within a short grace time (Config.SeedGrace, default 1 minute);
// a thief at another address is refused at once, and anyone is refused
// after the grace time.
//
// A machine that boots again (a reinstall, or a diskless machine's
// reboot) needs its seeds re-armed: Rearm (SIGHUP to imgforge serve)
// arms every seed again. Restarting serve does too: the record of what
// was handed out lives in memory only.
type seedLedger struct {
	mu     sync.Mutex
	handed map[string]handout // key: MAC + "/" + file
}

type handout struct {
	to net.IP
	at time.Time
}

// seedOnceFiles are the seed files that are handed out once.
var seedOnceFiles = map[string]bool{"user-data": true, "vendor-data": true}

// take records that client asks for file of mac at now: it returns
// whether the file may be sent and, when not, to whom and when it was
// sent before.
func (l *seedLedger) take(mac, file string, client net.IP, now time.Time, grace time.Duration) (bool, handout) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.handed == nil {
		l.handed = map[string]handout{}
	}
	k := mac + "/" + file
	prev, ok := l.handed[k]
	if !ok {
		l.handed[k] = handout{to: client, at: now}
		return true, handout{}
	}
	if grace > 0 && prev.to.Equal(client) && now.Sub(prev.at) < grace {
		return true, prev
	}
	return false, prev
}

// peek says whether file of mac is still armed, without taking it.
func (l *seedLedger) peek(mac, file string, client net.IP, now time.Time, grace time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	prev, ok := l.handed[mac+"/"+file]
	return !ok || (grace > 0 && prev.to.Equal(client) && now.Sub(prev.at) < grace)
}

// rearm forgets every hand-out and returns how many there were.
func (l *seedLedger) rearm() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.handed)
	l.handed = nil
	return n
}

// Rearm arms every machine's secret-bearing seed files again, so that
// each can be fetched once more (imgforge serve does this on SIGHUP).
func (s *Server) Rearm() {
	n := s.seeds.rearm()
	s.logf("seeds re-armed: %d handed-out seed file(s) may be fetched once again", n)
}

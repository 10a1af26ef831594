package spec

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// mirrorRe is every Debian mirror URL imgforge accepts: http or https, a
// host name or address with an optional port, and an optional path.
var mirrorRe = regexp.MustCompile(`^https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[A-Za-z0-9._~+/-]*)?$`)

// MirrorAccepted says in messages what CheckMirror accepts.
const MirrorAccepted = "accepted: an http:// or https:// URL with a host, an optional :port and an optional path of letters, digits and / . _ ~ + -, such as http://deb.debian.org/debian"

// CheckMirror checks a Debian mirror URL before it becomes an apt source
// line: the image definition's distribution.mirror and security_mirror,
// the CLI's --mirror, the Packer plugin's mirror and the host's detected
// mirrors all go through it. It refuses whitespace and control characters
// (a newline would add an apt source), a user or password, a query and a
// fragment. Its errors never repeat the value, which may hold a password.
func CheckMirror(s string) error {
	if mirrorRe.MatchString(s) {
		u, err := url.Parse(s)
		if err == nil && u.Host != "" && u.User == nil && u.RawQuery == "" && u.Fragment == "" {
			return nil
		}
	}
	var why string
	switch {
	case s == "":
		why = "is empty"
	case strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
		why = "holds whitespace or a control character"
	case !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://"):
		why = "is not an http:// or https:// URL"
	case strings.ContainsAny(s, "?#"):
		why = "has a query or a fragment"
	case strings.Contains(strings.SplitN(strings.SplitN(s, "://", 2)[1], "/", 2)[0], "@"):
		why = "holds a user or password"
	case strings.HasPrefix(strings.SplitN(s, "://", 2)[1], "/") || strings.HasPrefix(strings.SplitN(s, "://", 2)[1], ":"):
		why = "has no host"
	default:
		why = "holds a character that is not accepted"
	}
	return errors.New("the mirror URL " + why + "; " + MirrorAccepted)
}

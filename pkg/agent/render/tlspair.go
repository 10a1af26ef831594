package render

import "fmt"

// tlsPair is the node's TLS pair: the one given at boot, the self-signed
// one already on the node (at certPath and keyPath) while it fits, or a
// new self-signed one.
func (r *Renderer) tlsPair(in *Input, certPath, keyPath string) (*TLS, error) {
	if in.TLS != nil {
		return in.TLS, nil
	}
	if r.Now == nil || r.Rand == nil {
		return nil, fmt.Errorf("a self-signed certificate needs Renderer.Rand and Renderer.Now")
	}
	now := r.Now()
	if cur := currentPair(r.Current, certPath, keyPath); cur != nil && fits(cur, now, in.Self.Name, in.Self.Address) {
		return cur, nil
	}
	return SelfSigned(r.Rand, now, in.Self.Name, in.Self.Address)
}

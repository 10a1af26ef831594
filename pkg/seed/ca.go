package seed

import (
	"bytes"
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/imgforge/imgforge/pkg/agent/identity"
)

// ReadCA reads the cluster CA (certificate and key) from the secrets.yaml
// an earlier imgforge seed wrote at path, with the same checks as seed
// (a regular file only its owner may read), for tools that act for the
// operator (imgforge rollout). The key is returned, never printed.
func ReadCA(path, cluster string) (*identity.CA, error) {
	data, err := readSecretsFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the cluster CA: %w", err)
	}
	var sec Secrets
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&sec); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if sec.Cluster != cluster {
		return nil, fmt.Errorf("%s holds the secrets of cluster %q, not %q", path, sec.Cluster, cluster)
	}
	if sec.CA == nil {
		return nil, fmt.Errorf("%s: ca: missing; imgforge seed makes the cluster CA", path)
	}
	ca, err := identity.ParseCA([]byte(sec.CA.Cert), []byte(sec.CA.Key))
	if err != nil {
		return nil, fmt.Errorf("%s: ca: %w", path, err)
	}
	if identity.Cluster(ca.Cert) != cluster {
		return nil, errors.New(path + ": ca: is the CA of another cluster")
	}
	return ca, nil
}

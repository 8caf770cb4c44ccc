package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ClusterKey returns the pair's primary (sending) key: cluster.secret, or
// the first key of cluster.secret_file. It returns nil, nil when neither
// is set and cluster.insecure is true, and an error when the keys are not
// valid (see ClusterKeys).
func (c *Config) ClusterKey() ([]byte, error) {
	keys, err := c.ClusterKeys()
	if err != nil || len(keys) == 0 {
		return nil, err
	}
	return keys[0], nil
}

// ClusterKeys returns every key of the pair, the primary first: it sends
// with the primary and accepts all of them, so keys can be rotated
// without a restart (README, "Key rotation"). The primary is
// cluster.secret or the first key of cluster.secret_file; the others are
// the further keys of the file (one a line; blank lines and # comments
// are ignored), then cluster.accept_secrets. It returns nil, nil when no
// key is set and cluster.insecure is true, and an error when no key is
// set otherwise, when both secret and secret_file are set, when a key is
// not base64 of 16, 24 or 32 bytes or when one is listed twice. Validate
// reports the same problems, each at its key.
func (c *Config) ClusterKeys() ([][]byte, error) {
	ks, probs := c.clusterKeys()
	if len(probs) > 0 {
		return nil, errors.New(probs[0].msg)
	}
	return ks, nil
}

// keyProblem is a problem with one of the keys, at its config key path.
type keyProblem struct{ key, msg string }

// clusterKeys decodes every key and collects every problem.
func (c *Config) clusterKeys() ([][]byte, []keyProblem) {
	cl := c.Cluster
	var (
		keys  [][]byte
		where []string // where each key of keys came from, for duplicates
		probs []keyProblem
	)
	add := func(key, from string, k []byte) {
		for i, o := range keys {
			if bytes.Equal(o, k) {
				probs = append(probs, keyProblem{key, fmt.Sprintf("%s is the same key as %s", from, where[i])})
				return
			}
		}
		keys, where = append(keys, k), append(where, from)
	}
	switch {
	case cl.Secret != "" && cl.SecretFile != "":
		return nil, []keyProblem{{"cluster.secret_file", "set either cluster.secret or cluster.secret_file, not both"}}
	case cl.Secret != "":
		k, err := decodeKey(cl.Secret)
		if err != nil {
			probs = append(probs, keyProblem{"cluster.secret", err.Error()})
		} else {
			add("cluster.secret", "cluster.secret", k)
		}
	case cl.SecretFile != "":
		b, err := os.ReadFile(cl.SecretFile)
		if err != nil {
			return nil, []keyProblem{{"cluster.secret_file", fmt.Sprintf("cannot read the key: %v", err)}}
		}
		n := 0
		for i, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			n++
			from := fmt.Sprintf("%s:%d", cl.SecretFile, i+1)
			k, err := decodeKey(line)
			if err != nil {
				if n == 1 && !strings.Contains(strings.TrimSpace(string(b)), "\n") {
					from = cl.SecretFile // a one-key file: no line number needed
				}
				probs = append(probs, keyProblem{"cluster.secret_file", fmt.Sprintf("%s: %v", from, err)})
				continue
			}
			add("cluster.secret_file", from, k)
		}
		if n == 0 {
			probs = append(probs, keyProblem{"cluster.secret_file", fmt.Sprintf("%s holds no key (`tandem keygen > %s` makes one)", cl.SecretFile, cl.SecretFile)})
		}
	}
	if cl.Secret == "" && cl.SecretFile == "" {
		switch {
		case len(cl.AcceptSecrets) > 0:
			probs = append(probs, keyProblem{"cluster.accept_secrets", "accepted keys need a primary key: set cluster.secret or cluster.secret_file"})
			return nil, probs
		case cl.Insecure:
			return nil, nil
		}
		return nil, []keyProblem{{"cluster.secret", errNoKey}}
	}
	for i, s := range cl.AcceptSecrets {
		key := "cluster.accept_secrets[" + strconv.Itoa(i) + "]"
		k, err := decodeKey(s)
		if err != nil {
			probs = append(probs, keyProblem{key, err.Error()})
			continue
		}
		add(key, key, k)
	}
	return keys, probs
}

// decodeKey decodes a base64 AES key; memberlist takes 16, 24 or 32 bytes.
func decodeKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, errors.New("must be base64 of a 16, 24 or 32-byte key (`tandem keygen` makes one): not valid base64")
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("must be base64 of a 16, 24 or 32-byte key (`tandem keygen` makes one): got %d bytes", len(key))
}

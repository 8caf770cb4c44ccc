package node

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tandem-lb/tandem/pkg/config"
)

// Certificates travel to the peer on the replication stream as documents
// (replicate.PublishBlob) named "tls/CLUSTER/I", I the pair's index in
// the cluster's tls (0: cert_file and key_file, then certificates[]):
// the certificate file's bytes behind their length, then the key file's.
// Both boxes name the same files (tls is in the config hash the stream
// checks), so the receiver writes the peer's certificate into its own
// files and reloads it when it is the newer one: issued later (NotBefore)
// than its own, or its own does not load. A renewed certificate put on
// either box thus reaches the other, and the standby never serves an old
// one; a box never takes an older certificate, so the two never fight.
const certDocPrefix = "tls/"

// certPairs are the certificate and key files of a cluster's tls.
func certPairs(t *config.TLS) []config.CertPair {
	return append([]config.CertPair{{CertFile: t.CertFile, KeyFile: t.KeyFile}}, t.Certificates...)
}

// publishCerts publishes the certificates of every https cluster (an
// unchanged one is not sent again). Without replication it does nothing.
func (n *Node) publishCerts() {
	if n.repl == nil {
		return
	}
	for _, c := range n.gen().clusters {
		if c.http == nil || c.cfg.TLS == nil {
			continue
		}
		for i, p := range certPairs(c.cfg.TLS) {
			doc, err := certDoc(p)
			if err == nil {
				err = n.repl.PublishBlob(certDocPrefix+c.cfg.Name+"/"+strconv.Itoa(i), doc)
			}
			if err != nil {
				n.log.Warn("certificate not replicated to the peer", "cluster", c.cfg.Name, "file", p.CertFile, "err", err)
			}
		}
	}
}

// certDoc reads a pair's files into a document.
func certDoc(p config.CertPair) ([]byte, error) {
	cert, err := os.ReadFile(p.CertFile)
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(p.KeyFile)
	if err != nil {
		return nil, err
	}
	doc := binary.AppendUvarint(nil, uint64(len(cert)))
	return append(append(doc, cert...), key...), nil
}

// splitCertDoc is certDoc's inverse.
func splitCertDoc(doc []byte) (cert, key []byte, err error) {
	n, k := binary.Uvarint(doc)
	if k <= 0 || n > uint64(len(doc)-k) {
		return nil, nil, errors.New("malformed certificate document")
	}
	return doc[k : k+int(n)], doc[k+int(n):], nil
}

// takePeerCert decides whether the peer's pair replaces the local one:
// only a valid pair, and only when it differs and is newer (issued
// later) than the local one, or the local one does not load.
func takePeerCert(local, peer []byte) (bool, string) {
	pc, pk, err := splitCertDoc(peer)
	if err != nil {
		return false, err.Error()
	}
	peerLeaf, err := leafOf(pc, pk)
	if err != nil {
		return false, "the peer's certificate does not load: " + err.Error()
	}
	if bytes.Equal(local, peer) {
		return false, "the same"
	}
	lc, lk, err := splitCertDoc(local)
	if err != nil {
		return true, "the local files do not load"
	}
	localLeaf, err := leafOf(lc, lk)
	if err != nil {
		return true, "the local certificate does not load: " + err.Error()
	}
	if peerLeaf.NotBefore.After(localLeaf.NotBefore) {
		return true, "the peer's was issued later"
	}
	return false, "the local one is as new or newer"
}

func leafOf(cert, key []byte) (*x509.Certificate, error) {
	c, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(c.Certificate[0])
}

// applyPeerCert is the replication's document handler: it writes a newer
// certificate of the peer into this box's files and reloads the cluster.
func (n *Node) applyPeerCert(name string, doc []byte) {
	rest, ok := strings.CutPrefix(name, certDocPrefix)
	cluster, idx, ok2 := strings.Cut(rest, "/")
	i, err := strconv.Atoi(idx)
	if !ok || !ok2 || err != nil {
		return
	}
	for _, c := range n.gen().clusters {
		if c.cfg.Name != cluster || c.http == nil || c.cfg.TLS == nil {
			continue
		}
		pairs := certPairs(c.cfg.TLS)
		if i < 0 || i >= len(pairs) {
			return
		}
		p := pairs[i]
		local, _ := certDoc(p)
		take, why := takePeerCert(local, doc)
		if !take {
			n.log.Debug("peer's certificate not taken", "cluster", cluster, "file", p.CertFile, "why", why)
			return
		}
		cert, key, _ := splitCertDoc(doc)
		if err := writeCertFiles(p, cert, key); err != nil {
			n.log.Error("cannot write the peer's newer certificate", "cluster", cluster, "file", p.CertFile, "err", err)
			n.events.add("tls", "%s: the peer's newer certificate could not be written: %v", cluster, err)
			return
		}
		if _, err := c.http.ReloadCertificates(); err != nil {
			n.log.Error("the peer's certificate was written but does not load", "cluster", cluster, "err", err)
			return
		}
		n.log.Info("certificate taken from the peer", "cluster", cluster, "file", p.CertFile, "why", why)
		n.events.add("tls", "%s: certificate %s taken from the peer (%s)", cluster, p.CertFile, why)
		return
	}
}

// writeCertFiles replaces the pair's files, each by a rename of a file
// written beside it (the key readable by the owner only).
func writeCertFiles(p config.CertPair, cert, key []byte) error {
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{p.KeyFile, key, 0o600}, {p.CertFile, cert, 0o644}} {
		tmp, err := os.CreateTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".*")
		if err != nil {
			return err
		}
		_, err = tmp.Write(f.data)
		if err == nil {
			err = tmp.Chmod(f.mode)
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), f.path)
		}
		if err != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("%s: %w", f.path, err)
		}
	}
	return nil
}

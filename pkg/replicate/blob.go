package replicate

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
)

// msgBlob carries a named document beside the entries (S→R): an http
// cluster's certificate and key, say.
//
//	BLOB  S→R  name (uvarint length, bytes) | data (the rest of the frame)
//
// Documents are few and small: the sender sends all of them when its
// stream starts and all of them again whenever one changes; they are
// not acknowledged on their own (a lost connection resends them on the
// next), and the receiver's handler decides what to make of each.
const msgBlob byte = 9

// Bounds of a document: its name, and its data (well inside a frame).
const (
	MaxBlobName = 255
	MaxBlobLen  = 512 << 10
)

// BlobHandler receives each of the peer's documents. It runs on the
// receiving stream, so it must return quickly; data is its own.
type BlobHandler func(name string, data []byte)

// blobSet is the documents this node publishes and the handler of the
// peer's.
type blobSet struct {
	mu  sync.Mutex
	m   map[string][]byte
	gen uint64 // bumped by each change
	on  BlobHandler
}

// PublishBlob sets this node's document name (replacing the last one of
// that name) and sends it to the peer: now if connected, else when the
// stream starts, and again after every reconnect. Publishing the same
// data again sends nothing.
func (r *Replicator) PublishBlob(name string, data []byte) error {
	if name == "" || len(name) > MaxBlobName {
		return fmt.Errorf("replicate: document name must be 1..%d bytes", MaxBlobName)
	}
	if len(data) > MaxBlobLen {
		return fmt.Errorf("replicate: document %s is %d bytes, more than %d", name, len(data), MaxBlobLen)
	}
	b := &r.blobs
	b.mu.Lock()
	if old, ok := b.m[name]; ok && bytes.Equal(old, data) {
		b.mu.Unlock()
		return nil
	}
	if b.m == nil {
		b.m = map[string][]byte{}
	}
	b.m[name] = bytes.Clone(data)
	b.gen++
	b.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
	return nil
}

// OnBlob sets the handler of the peer's documents; call it before Run.
func (r *Replicator) OnBlob(fn BlobHandler) {
	r.blobs.mu.Lock()
	r.blobs.on = fn
	r.blobs.mu.Unlock()
}

// blobGen is the documents' version.
func (r *Replicator) blobGen() uint64 {
	r.blobs.mu.Lock()
	defer r.blobs.mu.Unlock()
	return r.blobs.gen
}

// sendBlobs sends every document on s and returns the version sent.
func (r *Replicator) sendBlobs(s *session) (uint64, error) {
	r.blobs.mu.Lock()
	gen := r.blobs.gen
	frames := make([][]byte, 0, len(r.blobs.m))
	for name, data := range r.blobs.m {
		f := append([]byte{msgBlob}, binary.AppendUvarint(nil, uint64(len(name)))...)
		f = append(append(f, name...), data...)
		frames = append(frames, f)
	}
	r.blobs.mu.Unlock()
	for _, f := range frames {
		if err := r.sendFlush(s, f); err != nil {
			return 0, err
		}
	}
	return gen, nil
}

// recvBlob hands a BLOB frame's document (body: the frame after its type)
// to the handler.
func (r *Replicator) recvBlob(body []byte) error {
	d := decoder{b: body}
	name := d.str(MaxBlobName)
	if d.err != nil || name == "" || len(d.b) > MaxBlobLen {
		return fmt.Errorf("%w: BLOB", errMalformed)
	}
	r.blobs.mu.Lock()
	on := r.blobs.on
	r.blobs.mu.Unlock()
	if on != nil {
		on(name, bytes.Clone(d.b))
	}
	return nil
}

package replicate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Message types: the first byte of every sealed frame's plaintext.
const (
	msgUpdate    byte = 1 // S→R: seq uvarint, entries
	msgBulkBegin byte = 2 // S→R: epoch u64, kind byte
	msgBulkBatch byte = 3 // S→R: entries
	msgBulkEnd   byte = 4 // S→R: entries in the bulk uvarint
	msgAck       byte = 5 // R→S: epoch u64, seq uvarint
	msgPing      byte = 6 // S→R: empty; answered with an ACK
	msgConfig    byte = 7 // S→R: config hash (first sealed frame of the sender)
	msgState     byte = 8 // R→S: config hash, epoch u64, seq uvarint (first sealed frame of the receiver)
)

// Kinds of bulk announced by BULK_BEGIN.
const (
	bulkFull   byte = 0 // a snapshot of the whole Store follows as BULK_BATCH frames
	bulkResume byte = 1 // the unacknowledged UPDATE frames follow, resent
)

// dropFlowLen counts flow records too long to send (a Store bug).
const dropFlowLen = "flow_too_long"

// flowTag in an entry's cluster field marks a flow record; cluster
// indexes stay below it (config.MaxClusters).
const flowTag = 0xffff

// prefixInvalid is the prefix tag of the zero netip.Prefix.
const prefixInvalid = 0xff

// minEntryLen is the smallest encoded entry: cluster, tag, server, expires.
const minEntryLen = 4

var errMalformed = errors.New("malformed message")

// appendEntry appends e's encoding to b. Expires is sent as the difference
// from prev, the previous entry's Expires in the same frame (0 for the
// first), which is a few bytes for entries published close together.
//
//	cluster uvarint | tag byte | addr bytes | server uvarint | zigzag varint(expires - prev)
//
// tag is the prefix length for IPv4 (0..32), 64 + the length for IPv6
// (64..192), 0xff for the zero Prefix; only the ceil(bits/8) leading bytes
// of the masked address follow.
//
// A flow record is the cluster value flowTag, its length and its bytes:
//
//	flowTag uvarint | len uvarint | flow bytes
//
// and counts as Expires 0 for the next entry's difference.
func appendEntry(b []byte, e Entry, prev int64) []byte {
	if e.Flow != "" {
		b = binary.AppendUvarint(b, flowTag)
		b = binary.AppendUvarint(b, uint64(len(e.Flow)))
		return append(b, e.Flow...)
	}
	b = binary.AppendUvarint(b, uint64(e.Cluster))
	b = appendPrefix(b, e.Client)
	b = binary.AppendUvarint(b, uint64(e.Server))
	return binary.AppendVarint(b, e.Expires-prev)
}

func appendPrefix(b []byte, p netip.Prefix) []byte {
	bits := p.Bits()
	if bits < 0 {
		return append(b, prefixInvalid)
	}
	n := (bits + 7) / 8
	if a := p.Addr(); a.Is4() {
		v := a.As4()
		maskLast(v[:n], bits)
		b = append(b, byte(bits))
		return append(b, v[:n]...)
	}
	v := p.Addr().As16()
	maskLast(v[:n], bits)
	b = append(b, byte(64+bits))
	return append(b, v[:n]...)
}

// maskLast clears the host bits in the last of the ceil(bits/8) bytes of v.
func maskLast(v []byte, bits int) {
	if r := bits % 8; r != 0 && len(v) > 0 {
		v[len(v)-1] &= 0xff << (8 - r)
	}
}

// decoder reads a message body; the first error sticks and later reads
// return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errMalformed
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u16() uint16 {
	v := d.uvarint()
	if v > 0xffff {
		d.fail()
		return 0
	}
	return uint16(v)
}

func (d *decoder) u64() uint64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bytes(n int) []byte {
	if n < 0 || len(d.b) < n {
		d.fail()
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// str reads a uvarint-length string of at most max bytes.
func (d *decoder) str(max int) string {
	n := d.uvarint()
	if n > uint64(max) {
		d.fail()
		return ""
	}
	return string(d.bytes(int(n)))
}

// end reports the sticky error, or errMalformed if bytes remain.
func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errMalformed, len(d.b))
	}
	return d.err
}

func (d *decoder) prefix() netip.Prefix {
	tag := d.byte()
	switch {
	case d.err != nil:
		return netip.Prefix{}
	case tag == prefixInvalid:
		return netip.Prefix{}
	case tag <= 32:
		bits := int(tag)
		var a [4]byte
		n := copy(a[:], d.bytes((bits+7)/8))
		maskLast(a[:n], bits)
		return netip.PrefixFrom(netip.AddrFrom4(a), bits)
	case tag >= 64 && tag <= 64+128:
		bits := int(tag) - 64
		var a [16]byte
		n := copy(a[:], d.bytes((bits+7)/8))
		maskLast(a[:n], bits)
		return netip.PrefixFrom(netip.AddrFrom16(a), bits)
	}
	d.fail()
	return netip.Prefix{}
}

// decodeEntries appends the entries encoded in b to dst. It decodes the
// whole frame before the caller applies any of it, so a malformed frame
// changes nothing.
func decodeEntries(dst []Entry, b []byte) ([]Entry, error) {
	d := decoder{b: b}
	var prev int64
	for len(d.b) > 0 {
		var e Entry
		e.Cluster = d.u16()
		if e.Cluster == flowTag && d.err == nil {
			n := d.uvarint()
			if n == 0 || n > MaxFlowLen {
				d.fail()
			}
			e.Flow = string(d.bytes(int(n)))
			if d.err != nil {
				return dst, d.err
			}
			e.Cluster, prev = 0, 0
			dst = append(dst, e)
			continue
		}
		e.Client = d.prefix()
		e.Server = d.u16()
		e.Expires = prev + d.varint()
		if d.err != nil {
			return dst, d.err
		}
		prev = e.Expires
		dst = append(dst, e)
	}
	return dst, nil
}

// ack is the receiver's acknowledgement: it has applied stream epoch up to
// and including seq (epoch 0: liveness only, no full bulk applied yet).
type ack struct {
	epoch, seq uint64
}

func appendAck(b []byte, a ack) []byte {
	b = append(b, msgAck)
	b = binary.BigEndian.AppendUint64(b, a.epoch)
	return binary.AppendUvarint(b, a.seq)
}

func parseAck(body []byte) (ack, error) {
	d := decoder{b: body}
	a := ack{epoch: d.u64(), seq: d.uvarint()}
	return a, d.end()
}

// streamState is the receiver's position in the sender's stream, sent in
// STATE so the sender can resume instead of sending a full bulk.
type streamState struct {
	configHash string
	epoch, seq uint64
}

func appendState(b []byte, s streamState) []byte {
	b = append(b, msgState)
	b = binary.AppendUvarint(b, uint64(len(s.configHash)))
	b = append(b, s.configHash...)
	b = binary.BigEndian.AppendUint64(b, s.epoch)
	return binary.AppendUvarint(b, s.seq)
}

func parseState(body []byte) (streamState, error) {
	d := decoder{b: body}
	s := streamState{configHash: d.str(maxHashLen), epoch: d.u64(), seq: d.uvarint()}
	return s, d.end()
}

func appendConfig(b []byte, hash string) []byte {
	b = append(b, msgConfig)
	b = binary.AppendUvarint(b, uint64(len(hash)))
	return append(b, hash...)
}

func parseConfig(body []byte) (string, error) {
	d := decoder{b: body}
	h := d.str(maxHashLen)
	return h, d.end()
}

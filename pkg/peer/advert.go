// Package peer is the pair's encrypted transport. It wraps
// hashicorp/memberlist for membership, encryption (AES-GCM keyring) and
// labels, and carries VRRP-style adverts between the two nodes as
// memberlist best-effort packets. It knows nothing about elections: the
// advert's State is opaque here.
package peer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Wire format of an advert, version 1 (all integers big endian):
//
//	"TDMA" magic (4) | version (1) | priority (1)
//	node len (1) | node | state len (1) | state | hash len (1) | hash
//	seq (8) | state age ns (8, >= 0) | sent unix ns (8, 0 = zero time)
//
// Version 2 is version 1 with a flags byte after the priority; bit 0 is
// Held; bit 1 says an epoch (8, not 0) follows the sent time; bit 2 says
// the sender's hardware address follows (after the epoch): length (1,
// 1..MaxMACLen) | address. An advert with no flag set is always sent as
// version 1, so version 2 with flags 0 (or an unknown flag) is rejected
// as malformed.
//
// Strings are UTF-8 and bounded; the decoder rejects anything else, so a
// decoded advert always re-encodes to the same bytes.
const (
	advertMagic   = "TDMA"
	advertVersion = 1
	// advertVersionFlags carries the flags byte.
	advertVersionFlags = 2
	flagHeld           = 1
	flagEpoch          = 2
	flagMAC            = 4
	knownFlags         = flagHeld | flagEpoch | flagMAC

	// MaxMACLen bounds Advert.MAC (20 bytes: an InfiniBand address).
	MaxMACLen = 20

	// MaxNodeLen bounds Advert.Node in bytes.
	MaxNodeLen = 128
	// MaxStateLen bounds Advert.State in bytes.
	MaxStateLen = 16
	// MaxConfigHashLen bounds Advert.ConfigHash in bytes.
	MaxConfigHashLen = 128

	advertFixedLen = len(advertMagic) + 1 + 1 + 3 + 3*8
	// MaxAdvertLen is the largest encoded advert.
	MaxAdvertLen = advertFixedLen + 1 + MaxNodeLen + MaxStateLen + MaxConfigHashLen + 8 + 1 + MaxMACLen
)

// Errors returned by UnmarshalBinary; wrapped with detail.
var (
	ErrBadMagic   = errors.New("advert: bad magic")
	ErrBadVersion = errors.New("advert: unsupported version")
	ErrTruncated  = errors.New("advert: truncated")
	ErrTrailing   = errors.New("advert: trailing bytes")
	ErrBadField   = errors.New("advert: bad field")
)

// Advert is one heartbeat. State is "INIT"|"BACKUP"|"MASTER"|"FAULT"
// (opaque here).
type Advert struct {
	Node       string        // sender's node name
	Priority   uint8         // 0 = "I am leaving, take over now"
	State      string        // election state, opaque to this package
	ConfigHash string        // "sha256:..." so the pair can spot config drift
	Seq        uint64        // increases with every advert sent in one Epoch
	StateAge   time.Duration // how long the sender has been in State
	Sent       time.Time     // sender clock, for display only
	// Held says the sender must not be master now (its witness does not
	// answer, for instance): a held master hands over to a peer that is
	// not held.
	Held bool
	// Epoch is the sender's random per-run number (0: none, an older
	// Tandem). With Seq it makes a replayed advert recognisable: the
	// receiver accepts, per (node, epoch), only sequences it has not seen,
	// and a new epoch only once the node has proved it is its current one
	// (see freshness.go).
	Epoch uint64
	// MAC is the sender's hardware address on its VIP interface (nil when
	// unknown). Its own gratuitous ARPs are the only ones that may show
	// the peer still holds a VIP; any other box's are address conflicts.
	MAC []byte
}

// MarshalBinary encodes a in the compact versioned wire format. It fails
// on strings that are too long or not UTF-8, a negative StateAge, or a
// Sent time that does not fit in int64 nanoseconds since the epoch.
func (a Advert) MarshalBinary() ([]byte, error) {
	if err := checkString("node", a.Node, MaxNodeLen); err != nil {
		return nil, err
	}
	if err := checkString("state", a.State, MaxStateLen); err != nil {
		return nil, err
	}
	if err := checkString("config hash", a.ConfigHash, MaxConfigHashLen); err != nil {
		return nil, err
	}
	if a.StateAge < 0 {
		return nil, fmt.Errorf("%w: negative state age %v", ErrBadField, a.StateAge)
	}
	if len(a.MAC) > MaxMACLen {
		return nil, fmt.Errorf("%w: hardware address is %d bytes, max %d", ErrBadField, len(a.MAC), MaxMACLen)
	}
	sent, err := encodeTime(a.Sent)
	if err != nil {
		return nil, err
	}

	b := make([]byte, 0, advertFixedLen+len(a.Node)+len(a.State)+len(a.ConfigHash)+8)
	b = append(b, advertMagic...)
	var flags byte
	if a.Held {
		flags |= flagHeld
	}
	if a.Epoch != 0 {
		flags |= flagEpoch
	}
	if len(a.MAC) > 0 {
		flags |= flagMAC
	}
	if flags != 0 {
		b = append(b, advertVersionFlags, a.Priority, flags)
	} else {
		b = append(b, advertVersion, a.Priority)
	}
	b = appendString(b, a.Node)
	b = appendString(b, a.State)
	b = appendString(b, a.ConfigHash)
	b = binary.BigEndian.AppendUint64(b, a.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(a.StateAge))
	b = binary.BigEndian.AppendUint64(b, uint64(sent))
	if a.Epoch != 0 {
		b = binary.BigEndian.AppendUint64(b, a.Epoch)
	}
	if len(a.MAC) > 0 {
		b = append(b, byte(len(a.MAC)))
		b = append(b, a.MAC...)
	}
	return b, nil
}

// UnmarshalBinary decodes b strictly: bad magic or version, truncation,
// trailing bytes, over-long or non-UTF-8 strings and negative ages are
// errors. It never panics and does not retain b. On error a is unchanged.
func (a *Advert) UnmarshalBinary(b []byte) error {
	r := reader{b: b}
	magic, ok := r.bytes(len(advertMagic))
	if !ok {
		return fmt.Errorf("%w: %d bytes", ErrTruncated, len(b))
	}
	if string(magic) != advertMagic {
		return fmt.Errorf("%w: %q", ErrBadMagic, magic)
	}
	version, ok := r.byte()
	if !ok {
		return ErrTruncated
	}
	if version != advertVersion && version != advertVersionFlags {
		return fmt.Errorf("%w: %d", ErrBadVersion, version)
	}
	var out Advert
	if out.Priority, ok = r.byte(); !ok {
		return ErrTruncated
	}
	var flags byte
	if version == advertVersionFlags {
		if flags, ok = r.byte(); !ok {
			return ErrTruncated
		}
		if flags == 0 || flags&^knownFlags != 0 {
			return fmt.Errorf("%w: flags %#x", ErrBadField, flags)
		}
		out.Held = flags&flagHeld != 0
	}
	var err error
	if out.Node, err = r.string("node", MaxNodeLen); err != nil {
		return err
	}
	if out.State, err = r.string("state", MaxStateLen); err != nil {
		return err
	}
	if out.ConfigHash, err = r.string("config hash", MaxConfigHashLen); err != nil {
		return err
	}
	var seq, age, sent uint64
	if seq, ok = r.uint64(); !ok {
		return ErrTruncated
	}
	if age, ok = r.uint64(); !ok {
		return ErrTruncated
	}
	if sent, ok = r.uint64(); !ok {
		return ErrTruncated
	}
	if flags&flagEpoch != 0 {
		if out.Epoch, ok = r.uint64(); !ok {
			return ErrTruncated
		}
		if out.Epoch == 0 {
			return fmt.Errorf("%w: epoch flag with epoch 0", ErrBadField)
		}
	}
	if flags&flagMAC != 0 {
		n, ok := r.byte()
		if !ok {
			return ErrTruncated
		}
		if n == 0 || n > MaxMACLen {
			return fmt.Errorf("%w: hardware address length %d", ErrBadField, n)
		}
		mac, ok := r.bytes(int(n))
		if !ok {
			return ErrTruncated
		}
		out.MAC = bytes.Clone(mac)
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d", ErrTrailing, len(r.b))
	}
	if age > math.MaxInt64 {
		return fmt.Errorf("%w: negative state age", ErrBadField)
	}
	out.Seq = seq
	out.StateAge = time.Duration(age)
	out.Sent = decodeTime(int64(sent))
	*a = out
	return nil
}

func checkString(field, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%w: %s is %d bytes, max %d", ErrBadField, field, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrBadField, field)
	}
	return nil
}

func appendString(b []byte, s string) []byte {
	b = append(b, byte(len(s)))
	return append(b, s...)
}

// encodeTime maps the zero time to 0 and anything else to Unix
// nanoseconds; times outside int64 nanoseconds (years ~1678..2262) and
// the instant 0 itself (which would read back as the zero time) are
// refused rather than silently changed.
func encodeTime(t time.Time) (int64, error) {
	if t.IsZero() {
		return 0, nil
	}
	ns := t.UnixNano()
	if ns == 0 || !time.Unix(0, ns).Equal(t) {
		return 0, fmt.Errorf("%w: sent time %v not representable", ErrBadField, t)
	}
	return ns, nil
}

func decodeTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// reader consumes a byte slice with bounds checks; every method reports
// false instead of panicking when b is too short.
type reader struct{ b []byte }

func (r *reader) bytes(n int) ([]byte, bool) {
	if n < 0 || len(r.b) < n {
		return nil, false
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out, true
}

func (r *reader) byte() (byte, bool) {
	b, ok := r.bytes(1)
	if !ok {
		return 0, false
	}
	return b[0], true
}

func (r *reader) uint64() (uint64, bool) {
	b, ok := r.bytes(8)
	if !ok {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

func (r *reader) string(field string, max int) (string, error) {
	n, ok := r.byte()
	if !ok {
		return "", ErrTruncated
	}
	if int(n) > max {
		return "", fmt.Errorf("%w: %s length %d, max %d", ErrBadField, field, n, max)
	}
	b, ok := r.bytes(int(n))
	if !ok {
		return "", fmt.Errorf("%w: %s wants %d bytes, %d left", ErrTruncated, field, n, len(r.b))
	}
	s := string(b) // copies: the advert never aliases the packet buffer
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: %s is not UTF-8", ErrBadField, field)
	}
	return s, nil
}

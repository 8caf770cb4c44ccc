package witness

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"sync"

	"golang.org/x/net/icmp"
)

// echoBook remembers the witness's echo requests so that only a real
// answer counts: the identifier, a sequence sent lately and a payload
// with a random token of this run. A host on the LAN can forge an echo
// reply from the witness's address, and the identifier alone (16 bits)
// is easy to guess; the 128-bit token is not, so a forger who does not
// see our requests cannot keep a cut-off box believing it is connected.
type echoBook struct {
	id    int
	token [16]byte

	mu   sync.Mutex
	seqs [echoRemember]int // the last sequences sent, oldest overwritten
	next int
	n    int
}

// echoRemember is how many recent requests an answer may match: a few
// advert intervals' worth (two pings per interval).
const echoRemember = 8

func newEchoBook(id int) *echoBook {
	b := &echoBook{id: id}
	_, _ = rand.Read(b.token[:])
	return b
}

// request builds the echo body for seq and records it.
func (b *echoBook) request(seq int) *icmp.Echo {
	b.mu.Lock()
	b.seqs[b.next] = seq
	b.next = (b.next + 1) % echoRemember
	b.n = min(b.n+1, echoRemember)
	b.mu.Unlock()
	return &icmp.Echo{ID: b.id, Seq: seq, Data: b.payload(seq)}
}

func (b *echoBook) payload(seq int) []byte {
	p := append([]byte("tandem witness "), b.token[:]...)
	return binary.BigEndian.AppendUint16(p, uint16(seq))
}

// answers reports whether e answers one of our recent requests.
func (b *echoBook) answers(e *icmp.Echo) bool {
	if e == nil || e.ID != b.id || !bytes.Equal(e.Data, b.payload(e.Seq)) {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range b.n {
		if b.seqs[i] == e.Seq {
			return true
		}
	}
	return false
}

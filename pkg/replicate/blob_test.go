package replicate

import (
	"strings"
	"sync"
	"testing"

	"github.com/tandem-lb/tandem/internal/testutil"
)

// blobLog records the documents a node's handler got, in order.
type blobLog struct {
	mu  sync.Mutex
	got []string // "name=data"
}

func (l *blobLog) on(name string, data []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, name+"="+string(data))
}

func (l *blobLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.got...)
}

// TestBlobsReachThePeer: a document published before the stream starts
// arrives when it does, a changed one arrives again, an unchanged one is
// not resent, and both directions carry them; bad names and sizes are
// refused.
func TestBlobsReachThePeer(t *testing.T) {
	a, b := pair(t, newStore(false), newStore(false), nil)
	var atB, atA blobLog
	b.r.OnBlob(atB.on)
	a.r.OnBlob(atA.on)
	if err := a.r.PublishBlob("tls/www/0", []byte("cert v1")); err != nil {
		t.Fatal(err)
	}
	a.start(t)
	b.start(t)
	testutil.WaitFor(t, "IN SYNC", inSync(a, b))
	testutil.WaitFor(t, "B to get v1", func() bool { return len(atB.list()) == 1 })
	if err := a.r.PublishBlob("tls/www/0", []byte("cert v2")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "B to get v2", func() bool { return len(atB.list()) >= 2 })
	a.r.PublishBlob("tls/www/0", []byte("cert v2")) // unchanged: nothing sent
	b.r.PublishBlob("tls/api/0", []byte("from b"))
	testutil.WaitFor(t, "A to get B's", func() bool { return len(atA.list()) == 1 })
	if got := strings.Join(atB.list(), ", "); got != "tls/www/0=cert v1, tls/www/0=cert v2" {
		t.Errorf("B got %s", got)
	}
	if got := atA.list()[0]; got != "tls/api/0=from b" {
		t.Errorf("A got %s", got)
	}
	if a.r.PublishBlob("", nil) == nil || a.r.PublishBlob("x", make([]byte, MaxBlobLen+1)) == nil {
		t.Error("an empty name or an oversized document was accepted")
	}
}
